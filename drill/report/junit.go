package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/straitmesh/strait/drill"
)

// The JUnit XML shape the common CI readers accept (GitLab's
// artifacts:reports:junit, Jenkins' junit step, GitHub's test reporter
// actions): testsuites > testsuite > testcase, a failure element with
// message and type attributes and the details as its text.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Classname string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// Failure types in the JUnit output.
const (
	junitVerdictFailed = "VerdictFailed"
	junitAborted       = "StopCondition"
)

// JUnit writes r as JUnit XML: one test suite for the drill, one test case
// per verdict (class drill.NAME, named for the expectation), and a failing
// "stop condition" case when a stop condition aborted the drill.
func JUnit(w io.Writer, r *drill.Result) error {
	class := "drill." + r.Drill
	s := junitSuite{
		Name: r.Drill,
		Time: seconds(r.Ran),
		Properties: []junitProperty{
			{Name: "target", Value: r.Target},
			{Name: "planned", Value: dur(r.Planned)},
		},
	}
	if r.File != "" {
		s.Properties = append(s.Properties, junitProperty{Name: "file", Value: r.File})
	}
	if !r.Started.IsZero() {
		s.Timestamp = r.Started.UTC().Format("2006-01-02T15:04:05")
	}
	for _, v := range r.Verdicts {
		c := junitCase{Classname: class, Name: v.Expectation, Time: "0"}
		if !v.Pass {
			c.Failure = &junitFailure{
				Message: fmt.Sprintf("measured %s, limit %s", v.Measured, v.Limit),
				Type:    junitVerdictFailed,
				Text:    verdictText(v),
			}
		}
		s.Cases = append(s.Cases, c)
	}
	if a := r.Aborted; a != nil {
		s.Cases = append(s.Cases, junitCase{
			Classname: class,
			Name:      "stop condition",
			Time:      "0",
			Failure: &junitFailure{
				Message: fmt.Sprintf("aborted at %s by %s: %s", dur(a.At), a.Condition, a.Reason),
				Type:    junitAborted,
				Text: fmt.Sprintf("condition: %s\nat: %s of %s\nreason: %s\n",
					a.Condition, dur(a.At), dur(r.Planned), a.Reason),
			},
		})
	}
	s.Tests = len(s.Cases)
	for _, c := range s.Cases {
		if c.Failure != nil {
			s.Failures++
		}
	}
	doc := junitSuites{Name: "strait drill", Tests: s.Tests, Failures: s.Failures, Time: s.Time, Suites: []junitSuite{s}}

	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write junit for drill %s: %w", r.Drill, err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func verdictText(v drill.Verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "expectation: %s\nlimit: %s\nmeasured: %s\n", v.Expectation, v.Limit, v.Measured)
	if v.Detail != "" {
		fmt.Fprintf(&b, "detail: %s\n", v.Detail)
	}
	return b.String()
}

func seconds(d time.Duration) string {
	return fmt.Sprintf("%.3f", d.Seconds())
}

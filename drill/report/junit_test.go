package report

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
)

// What a CI reader takes from the JUnit output, parsed back with
// encoding/xml independently of the writer's structs.
type parsedSuites struct {
	XMLName xml.Name `xml:"testsuites"`
	Tests   int      `xml:"tests,attr"`
	Fails   int      `xml:"failures,attr"`
	Suites  []struct {
		Name     string  `xml:"name,attr"`
		Tests    int     `xml:"tests,attr"`
		Failures int     `xml:"failures,attr"`
		Time     float64 `xml:"time,attr"`
		Cases    []struct {
			Classname string `xml:"classname,attr"`
			Name      string `xml:"name,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func parseJUnit(t *testing.T, b []byte) parsedSuites {
	t.Helper()
	var p parsedSuites
	if err := xml.Unmarshal(b, &p); err != nil {
		t.Fatalf("parse junit: %v\n%s", err, b)
	}
	if len(p.Suites) != 1 {
		t.Fatalf("%d test suites, want 1", len(p.Suites))
	}
	return p
}

func TestJUnitOneCasePerVerdict(t *testing.T) {
	r := sampleResult()
	var b bytes.Buffer
	if err := JUnit(&b, r); err != nil {
		t.Fatal(err)
	}
	p := parseJUnit(t, b.Bytes())
	s := p.Suites[0]
	if s.Name != "lose-eu-west" || s.Tests != 4 || s.Failures != 1 || s.Time != 90 {
		t.Errorf("suite %q tests=%d failures=%d time=%v, want lose-eu-west 4 1 90", s.Name, s.Tests, s.Failures, s.Time)
	}
	if p.Tests != 4 || p.Fails != 1 {
		t.Errorf("testsuites tests=%d failures=%d, want 4 1", p.Tests, p.Fails)
	}
	if len(s.Cases) != len(r.Verdicts) {
		t.Fatalf("%d test cases, want %d", len(s.Cases), len(r.Verdicts))
	}
	for i, c := range s.Cases {
		v := r.Verdicts[i]
		if c.Classname != "drill.lose-eu-west" || c.Name != v.Expectation {
			t.Errorf("case %d: %s %q, want drill.lose-eu-west %q", i, c.Classname, c.Name, v.Expectation)
		}
		if (c.Failure == nil) != v.Pass {
			t.Errorf("case %q: failure %v for pass=%v", c.Name, c.Failure, v.Pass)
		}
		if c.Failure != nil {
			if c.Failure.Type != junitVerdictFailed || !strings.Contains(c.Failure.Message, v.Measured) || !strings.Contains(c.Failure.Message, v.Limit) {
				t.Errorf("failure %+v: want type %s with measured %s and limit %s", c.Failure, junitVerdictFailed, v.Measured, v.Limit)
			}
			if !strings.Contains(c.Failure.Text, v.Detail) {
				t.Errorf("failure text %q lacks the detail %q", c.Failure.Text, v.Detail)
			}
		}
	}
}

// An aborted drill fails in CI even when its verdicts pass, and user text
// survives XML escaping unchanged.
func TestJUnitAbortedAddsStopCondition(t *testing.T) {
	r := passing(abortedResult())
	var b bytes.Buffer
	if err := JUnit(&b, r); err != nil {
		t.Fatal(err)
	}
	p := parseJUnit(t, b.Bytes())
	s := p.Suites[0]
	if s.Name != r.Drill || s.Tests != 2 || s.Failures != 1 || s.Time != 31.5 {
		t.Fatalf("suite %q tests=%d failures=%d time=%v, want %q 2 1 31.5", s.Name, s.Tests, s.Failures, s.Time, r.Drill)
	}
	last := s.Cases[1]
	if last.Name != "stop condition" || last.Classname != "drill."+r.Drill || last.Failure == nil {
		t.Fatalf("last case %+v, want a failing stop condition", last)
	}
	if last.Failure.Type != junitAborted || !strings.Contains(last.Failure.Text, r.Aborted.Reason) {
		t.Errorf("stop condition failure %+v: want type %s and the reason", last.Failure, junitAborted)
	}
	if s.Cases[0].Failure != nil {
		t.Errorf("passing verdict has a failure: %+v", s.Cases[0].Failure)
	}
}

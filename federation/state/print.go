package state

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteRecords prints records as a table for people, with the index and
// node the answer reflects.
func WriteRecords(w io.Writer, resp *ReadResponse) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tKEY\tINDEX\tCREATED\tCHANGED\tBY")
	for _, r := range resp.Records {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", r.Kind, r.Key, r.Index, r.Created, stamp(r.Time), dash(r.By))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeFooter(w, resp)
}

// WriteRecord prints one record: a header line, then its value.
func WriteRecord(w io.Writer, resp *ReadResponse) error {
	for _, r := range resp.Records {
		fmt.Fprintf(w, "# %s %s at index %d (created %d), changed %s by %s\n", r.Kind, r.Key, r.Index, r.Created, stamp(r.Time), dash(r.By))
		v := r.Value
		if !strings.HasSuffix(v, "\n") {
			v += "\n"
		}
		if _, err := io.WriteString(w, v); err != nil {
			return err
		}
	}
	return writeFooter(w, resp)
}

func writeFooter(w io.Writer, resp *ReadResponse) error {
	stale := ""
	if resp.Stale {
		stale = " (MAY BE STALE: no contact with a leader)"
	}
	_, err := fmt.Fprintf(w, "# state at index %d from %s%s\n", resp.Index, resp.Node, stale)
	return err
}

// WriteHistory prints the versions of one record, oldest first.
func WriteHistory(w io.Writer, kind, key string, resp *HistoryResponse) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "INDEX\tOP\tCHANGED\tBY\tREQUEST\n")
	for _, v := range resp.Versions {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", v.Index, v.Op, stamp(v.Time), dash(v.By), dash(v.RequestID))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "# %d versions of %s %s kept (at most %d)\n", len(resp.Versions), kind, key, historyDepth)
	return err
}

// WritePeers prints the Raft configuration.
func WritePeers(w io.Writer, resp *PeersResponse) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCLUSTER\tREGION\tVOTER\tLEADER\tRAFT\tCONTROL")
	for _, p := range resp.Peers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%s\t%s\n", p.ID, dash(p.Cluster), dash(p.Region), p.Voter, p.Leader, p.RaftAddr, dash(p.ControlAddr))
	}
	return tw.Flush()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

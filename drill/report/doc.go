// Package report renders a drill's Result for people and for CI: a
// terminal summary (Summary), JUnit XML (JUnit) and one self-contained
// HTML page with charts (HTML). ReadFile reads the Result document that
// `strait drill run --json` writes.
//
// Invariants:
//
//   - Rendering never judges: pass and fail come from the Result's own
//     verdicts, Pass and Aborted. A drill that was aborted fails in every
//     rendering, even when each verdict passed (an extra "stop condition"
//     test case in JUnit).
//   - The HTML page fetches nothing: charts are SVG drawn by
//     gonum.org/v1/plot on the server side and inlined, the style sheet is
//     inline, and there is no script. Every string from the Result (drill,
//     traffic, step names, reasons, details) is escaped by html/template or,
//     inside charts, by the SVG backend (TestHTMLEscapes). A real headless
//     Chromium loads the page without console errors and finds the charts
//     drawn (TestHTMLInBrowser).
//   - Summary's layout is held by a golden file (testdata/summary.golden,
//     refreshed with -update).
package report

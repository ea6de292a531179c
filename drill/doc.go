// Package drill reads failover drill files: the traffic a drill drives,
// the timeline of faults it injects and undoes, the expectations it judges
// (failover time, error rate, added p99, residency verdicts) and the
// conditions that stop it; and runs them (Run, DryRun) on a Federation
// through the gateways' fault mode, into a Result that drill/report
// renders.
//
// Guarantees of Parse:
//
//   - Decoding is strict: an unknown key anywhere is a problem, with a
//     "did you mean" for a close known name; so is an unknown fault kind
//     or protocol, and a key that does not belong to a step's kind
//     (TestParseProblems).
//   - Every problem names file:line:column and the field path
//     (timeline[2].kind); all problems of a file are reported together,
//     sorted by position, in one *Error, and a drill with any problem is
//     never returned.
//   - A returned Drill is consistent: step names are unique DNS labels,
//     offsets lie within the drill and never go back in time, a restore
//     names an earlier fault that no other restore undoes, refusedWhile
//     names a fault, every service expectation has traffic to measure,
//     rates are 1..MaxRate, percentages 0..100, durations positive, and
//     clusters, regions and clouds are DNS labels.
//   - No input makes Parse panic or do unbounded work (FuzzParseDrill):
//     files above MaxFileBytes are refused and YAML aliases are not
//     expanded.
//
// Guarantees of Run:
//
//   - Nothing is done to a federation that cannot take the whole drill:
//     every gateway's fault API must answer first, and the drill must
//     name only the federation's clusters, gateways, regions and clouds.
//   - Every fault is posted with a lease the run renews; the end of the
//     drill, a stop condition and the end of ctx undo every fault at once
//     (lab.TestDrillStopConditionUndoesEveryFault), and a run that dies
//     leaves no fault for longer than its lease
//     (lab.TestKilledDrillsFaultUndoesItself).
//   - A request served where its class may not go is a violation whoever
//     reports it, the serving service or a gateway's audit trail
//     (lab.TestDrillSeesViolationsInTheAuditTrail).
//
// Schema is a JSON Schema of the same format for editors and CI; it
// checks the shape of a file, not the references between its parts, and
// TestSchemaAgreesWithParse holds it to what Parse accepts.
package drill

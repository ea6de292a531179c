// Package statev1 is the wire form of the routing state's control API,
// strait.state.v1.Control: Go code generated from
// proto/strait/state/v1/control.proto by `make generate`, committed, and
// never edited by hand (TestGeneratedCodeIsCurrent fails when it differs
// from what the pinned generators make of the .proto).
//
// It sits beside package state, which serves the API and dials it, and is
// named after the protobuf package as buf lays out versioned APIs, so that
// a strait.state.v2 would live beside it. Go code speaks state.Control;
// the conversion to and from these messages happens only at the gRPC
// boundary in package state (control.go, control_wire.go). This package is
// not internal so that a program outside the module can call the API with
// the generated client, as programs in other languages do with the .proto.
package statev1

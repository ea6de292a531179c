package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/straitmesh/strait/drill"
)

// ErrInvalid is wrapped by ReadFile's errors about the document itself
// (not JSON, another apiVersion), as opposed to failing to read the file.
var ErrInvalid = errors.New("invalid drill result")

// ReadFile reads a Result document. Errors name the file; those about its
// content wrap ErrInvalid.
func ReadFile(path string) (*drill.Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Parse decodes a Result document and checks its apiVersion. Unknown
// fields are refused: they mean a writer newer than this reader.
func Parse(b []byte) (*drill.Result, error) {
	var probe struct {
		APIVersion *string `json:"apiVersion"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, jsonProblem(b, err))
	}
	switch {
	case probe.APIVersion == nil:
		return nil, fmt.Errorf("%w: apiVersion: missing, expected %q", ErrInvalid, drill.ResultVersion)
	case *probe.APIVersion != drill.ResultVersion:
		return nil, fmt.Errorf("%w: apiVersion: expected %q, found %q", ErrInvalid, drill.ResultVersion, *probe.APIVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r drill.Result
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, jsonProblem(b, err))
	}
	return &r, nil
}

// jsonProblem says where in b a decoding error is, as line:column.
func jsonProblem(b []byte, err error) string {
	var off int64 = -1
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		off = syn.Offset
	case errors.As(err, &typ):
		off = typ.Offset
	}
	if off < 0 || off > int64(len(b)) {
		return err.Error()
	}
	line, col := 1, 1
	for _, c := range b[:off] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("line %d, column %d: %v", line, col, err)
}

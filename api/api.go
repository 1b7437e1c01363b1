// Package api holds the service's API contract, api/openapi.yaml, embedded
// so that the service serves the document it was built with and the tests
// validate every exchange against the same bytes.
package api

import _ "embed"

//go:embed openapi.yaml
var spec []byte

// Spec returns the OpenAPI 3.1 document. The slice is the caller's own.
func Spec() []byte { return append([]byte(nil), spec...) }

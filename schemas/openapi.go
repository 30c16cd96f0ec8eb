package schemas

import _ "embed"

// OpenAPIFile is the file name of the admin API's OpenAPI document.
const OpenAPIFile = "openapi.json"

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document of the admin API. The slice is
// shared: callers must not modify it.
func OpenAPI() []byte { return openAPI }

// Package deploy holds Weft's Kubernetes manifest, embedded so that the
// lab applies the very objects (ServiceAccount, RBAC, admission policy)
// that `kubectl apply -f deploy/weft.yaml` creates in a real cluster.
package deploy

import _ "embed"

// Manifest is deploy/weft.yaml.
//
//go:embed weft.yaml
var Manifest []byte

// Dockerfile is deploy/Dockerfile, which says what Weft's image holds (the
// lab writes the same image without an engine).
//
//go:embed Dockerfile
var Dockerfile []byte

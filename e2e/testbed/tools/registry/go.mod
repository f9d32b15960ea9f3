// Pins the CNCF distribution registry the test bed runs as a private OCI registry
// (htpasswd auth, TLS from the test CA). Built by e2e/testbed/binaries.py.
module herd.local/e2e/testbed/tools/registry

go 1.26.0

require (
	github.com/distribution/distribution/v3 v3.1.2 // indirect
	github.com/distribution/reference v0.6.0 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
)

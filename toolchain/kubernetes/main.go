// Command pulumi-resource-kubernetes serves the Pulumi Kubernetes provider
// from the github.com/pulumi/pulumi-kubernetes/provider/v4 Go module.
//
// Upstream's cmd/pulumi-resource-kubernetes embeds schema-embed.json and
// terraform-mapping-embed.json, which its build generates and git ignores, so
// that package cannot be built from the module zip. toolchain/build.sh copies
// this file into a staging directory next to those two files, produced from
// the schema.json and terraform-mapping.json the module zip does ship.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var pulumiSchema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, pulumiSchema, terraformMapping)
}

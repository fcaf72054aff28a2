package provider

import (
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
)

// attrError reports a config fault on an attribute, naming its path in the detail too:
// Terraform shows a path only as a source excerpt, which for values from variables or
// nested blocks does not say which attribute is wrong.
func attrError(diags *diag.Diagnostics, p path.Path, summary, detail string) {
	diags.AddAttributeError(p, summary, p.String()+": "+detail)
}

func attrWarning(diags *diag.Diagnostics, p path.Path, summary, detail string) {
	diags.AddAttributeWarning(p, summary, p.String()+": "+detail)
}

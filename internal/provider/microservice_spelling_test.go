package provider

import (
	"context"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/microswarm/terraform-provider-microswarm/internal/bluegreen"
)

// A healthcheck duration the service reads back as Go spells it (5000ms as 5s) keeps the
// configuration's spelling; a changed one does not.
func TestKeepDurationSpelling(t *testing.T) {
	ctx := context.Background()
	var diags diag.Diagnostics
	color := func(interval, timeout time.Duration) types.Object {
		return colorValue(ctx, bluegreen.ColorSpec{Image: "app:1", Replicas: 1,
			Healthcheck: &container.HealthConfig{Test: []string{"CMD", "true"}, Interval: interval, Timeout: timeout}}, &diags)
	}
	spelled := func(interval, timeout string) types.Object {
		obj := color(time.Second, time.Second)
		attrs := obj.Attributes()
		hc := attrs["healthcheck"].(types.Object).Attributes()
		hc["interval"], hc["timeout"] = types.StringValue(interval), types.StringValue(timeout)
		h, d := types.ObjectValue(healthcheckAttrTypes, hc)
		diags.Append(d...)
		attrs["healthcheck"] = h
		o, d := types.ObjectValue(colorAttrTypes, attrs)
		diags.Append(d...)
		return o
	}
	read := func(o types.Object, k string) string {
		return o.Attributes()["healthcheck"].(types.Object).Attributes()[k].(types.String).ValueString()
	}
	got := keepDurationSpelling(spelled("5000ms", "1m"), color(5*time.Second, time.Minute), &diags)
	if read(got, "interval") != "5000ms" || read(got, "timeout") != "1m" {
		t.Errorf("same durations: got %s and %s, want the configuration's 5000ms and 1m", read(got, "interval"), read(got, "timeout"))
	}
	got = keepDurationSpelling(spelled("5000ms", "1m"), color(6*time.Second, time.Minute), &diags)
	if read(got, "interval") != "6s" || read(got, "timeout") != "1m" {
		t.Errorf("a changed interval: got %s and %s, want 6s (the drift) and 1m", read(got, "interval"), read(got, "timeout"))
	}
	if diags.HasError() {
		t.Fatal(diags)
	}
}

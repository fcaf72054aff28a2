package provider

import (
	"context"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	dockerswarm "github.com/docker/docker/api/types/swarm"
	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"

	"github.com/microswarm/terraform-provider-microswarm/internal/bluegreen"
)

type microserviceModel struct {
	ID           types.String   `tfsdk:"id"`
	Name         types.String   `tfsdk:"name"`
	Host         types.String   `tfsdk:"host"`
	HostKey      types.String   `tfsdk:"host_key"`
	ProxyHosts   types.List     `tfsdk:"proxy_hosts"`
	Port         types.Int64    `tfsdk:"port"`
	ListenPort   types.Int64    `tfsdk:"listen_port"`
	HealthPath   types.String   `tfsdk:"health_path"`
	Network      types.String   `tfsdk:"network"`
	EndpointMode types.String   `tfsdk:"endpoint_mode"`
	ProxyImage   types.String   `tfsdk:"proxy_image"`
	Blue         types.Object   `tfsdk:"blue"`
	Green        types.Object   `tfsdk:"green"`
	Active       types.String   `tfsdk:"active"`
	MinHealthy   types.Int64    `tfsdk:"min_healthy"`
	CanaryWeight types.Int64    `tfsdk:"canary_weight"`
	AutoRollback types.String   `tfsdk:"auto_rollback"`
	DrainTimeout types.String   `tfsdk:"drain_timeout"`
	Endpoints    types.List     `tfsdk:"endpoints"`
	LiveColor    types.String   `tfsdk:"live_color"`
	LiveVersion  types.String   `tfsdk:"live_version"`
	BlueRunning  types.Int64    `tfsdk:"blue_running"`
	GreenRunning types.Int64    `tfsdk:"green_running"`
	BluePassing  types.Int64    `tfsdk:"blue_passing"`
	GreenPassing types.Int64    `tfsdk:"green_passing"`
	Timeouts     timeouts.Value `tfsdk:"timeouts"`
}

type proxyHostModel struct {
	Host    types.String `tfsdk:"host"`
	HostKey types.String `tfsdk:"host_key"`
}

var proxyHostAttrTypes = map[string]attr.Type{"host": types.StringType, "host_key": types.StringType}

type colorModel struct {
	Image       types.String  `tfsdk:"image"`
	Replicas    types.Int64   `tfsdk:"replicas"`
	Env         types.Map     `tfsdk:"env"`
	Labels      types.Map     `tfsdk:"labels"`
	Command     types.List    `tfsdk:"command"`
	Args        types.List    `tfsdk:"args"`
	Constraints types.List    `tfsdk:"constraints"`
	Healthcheck types.Object  `tfsdk:"healthcheck"`
	CPULimit    types.Float64 `tfsdk:"cpu_limit"`
	MemoryLimit types.Int64   `tfsdk:"memory_limit_mb"`
}

type healthcheckModel struct {
	Test     types.List   `tfsdk:"test"`
	Interval types.String `tfsdk:"interval"`
	Timeout  types.String `tfsdk:"timeout"`
	Retries  types.Int64  `tfsdk:"retries"`
}

var healthcheckAttrTypes = map[string]attr.Type{
	"test": types.ListType{ElemType: types.StringType}, "interval": types.StringType, "timeout": types.StringType, "retries": types.Int64Type,
}

var colorAttrTypes = map[string]attr.Type{
	"image": types.StringType, "replicas": types.Int64Type,
	"env": types.MapType{ElemType: types.StringType}, "labels": types.MapType{ElemType: types.StringType},
	"command": types.ListType{ElemType: types.StringType}, "args": types.ListType{ElemType: types.StringType},
	"constraints": types.ListType{ElemType: types.StringType},
	"healthcheck": types.ObjectType{AttrTypes: healthcheckAttrTypes},
	"cpu_limit":   types.Float64Type, "memory_limit_mb": types.Int64Type,
}

// objectAsOptions reads nested objects with unset fields as nulls.
var objectAsOptions = basetypes.ObjectAsOptions{}

// route is the routing the model asks for.
func (m *microserviceModel) route() bluegreen.Route {
	return bluegreen.Route{Active: bluegreen.Color(m.Active.ValueString()), Canary: int(m.CanaryWeight.ValueInt64())}
}

func (m *microserviceModel) colorObject(c bluegreen.Color) types.Object {
	if c == bluegreen.Blue {
		return m.Blue
	}
	return m.Green
}

func (m *microserviceModel) setColorObject(c bluegreen.Color, v types.Object) {
	if c == bluegreen.Blue {
		m.Blue = v
	} else {
		m.Green = v
	}
}

func serviceOf(m microserviceModel) bluegreen.Service {
	return bluegreen.Service{
		Name: m.Name.ValueString(), Network: m.Network.ValueString(), Port: int(m.Port.ValueInt64()),
		HealthPath: m.HealthPath.ValueString(), EndpointMode: m.EndpointMode.ValueString(),
	}
}

func colorSpecOf(ctx context.Context, m colorModel, diags *diag.Diagnostics) bluegreen.ColorSpec {
	spec := bluegreen.ColorSpec{Image: m.Image.ValueString(), Replicas: uint64(max(m.Replicas.ValueInt64(), 0)),
		CPULimit: m.CPULimit.ValueFloat64(), MemoryLimitMB: m.MemoryLimit.ValueInt64()}
	diags.Append(m.Env.ElementsAs(ctx, &spec.Env, true)...)
	diags.Append(m.Labels.ElementsAs(ctx, &spec.Labels, true)...)
	diags.Append(m.Command.ElementsAs(ctx, &spec.Command, true)...)
	diags.Append(m.Args.ElementsAs(ctx, &spec.Args, true)...)
	diags.Append(m.Constraints.ElementsAs(ctx, &spec.Constraints, true)...)
	if !m.Healthcheck.IsNull() && !m.Healthcheck.IsUnknown() {
		var hc healthcheckModel
		diags.Append(m.Healthcheck.As(ctx, &hc, objectAsOptions)...)
		spec.Healthcheck = &container.HealthConfig{Retries: int(hc.Retries.ValueInt64())}
		diags.Append(hc.Test.ElementsAs(ctx, &spec.Healthcheck.Test, false)...)
		spec.Healthcheck.Interval, _ = parsePositiveDuration(hc.Interval.ValueString())
		spec.Healthcheck.Timeout, _ = parsePositiveDuration(hc.Timeout.ValueString())
	}
	return spec
}

// healthcheckValue is a live healthcheck override as its attribute.
func healthcheckValue(hc *container.HealthConfig, diags *diag.Diagnostics) types.Object {
	if hc == nil || len(hc.Test) == 0 {
		return types.ObjectNull(healthcheckAttrTypes)
	}
	dur := func(d time.Duration) types.String {
		if d == 0 {
			return types.StringNull()
		}
		return types.StringValue(d.String())
	}
	retries := types.Int64Null()
	if hc.Retries > 0 {
		retries = types.Int64Value(int64(hc.Retries))
	}
	obj, d := types.ObjectValue(healthcheckAttrTypes, map[string]attr.Value{
		"test": stringListOrNull(hc.Test), "interval": dur(hc.Interval), "timeout": dur(hc.Timeout), "retries": retries,
	})
	diags.Append(d...)
	return obj
}

// colorValue is a color's live deployment as its attribute; maps and lists the
// configuration left unset stay null when the live spec has none.
func colorValue(ctx context.Context, spec bluegreen.ColorSpec, diags *diag.Diagnostics) types.Object {
	mapOrNull := func(v map[string]string) types.Map {
		if len(v) == 0 {
			return types.MapNull(types.StringType)
		}
		m, d := types.MapValueFrom(ctx, types.StringType, v)
		diags.Append(d...)
		return m
	}
	obj, d := types.ObjectValue(colorAttrTypes, map[string]attr.Value{
		"image":           types.StringValue(spec.Image),
		"replicas":        types.Int64Value(int64(spec.Replicas)),
		"env":             mapOrNull(spec.Env),
		"labels":          mapOrNull(spec.Labels),
		"command":         stringListOrNull(spec.Command),
		"args":            stringListOrNull(spec.Args),
		"constraints":     stringListOrNull(spec.Constraints),
		"healthcheck":     healthcheckValue(spec.Healthcheck, diags),
		"cpu_limit":       float64OrNull(spec.CPULimit),
		"memory_limit_mb": int64OrNull(spec.MemoryLimitMB),
	})
	diags.Append(d...)
	return obj
}

// fillServiceSettings reads back from a color's live service what an import cannot know
// otherwise: the port (bluegreen.ServicePort: the same one whatever the label order),
// its health path and the endpoint mode.
func fillServiceSettings(m *microserviceModel, spec dockerswarm.ServiceSpec) {
	if ep := spec.EndpointSpec; ep != nil && ep.Mode != "" {
		m.EndpointMode = types.StringValue(string(ep.Mode))
	}
	port, ok := bluegreen.ServicePort(spec)
	if !ok || spec.TaskTemplate.ContainerSpec == nil {
		return
	}
	m.Port = types.Int64Value(int64(port))
	if path, ok := spec.TaskTemplate.ContainerSpec.Labels["SERVICE_"+strconv.Itoa(port)+"_CHECK_HTTP"]; ok {
		m.HealthPath = types.StringValue(path)
	}
}

func float64OrNull(v float64) types.Float64 {
	if v == 0 {
		return types.Float64Null()
	}
	return types.Float64Value(v)
}

func int64OrNull(v int64) types.Int64 {
	if v == 0 {
		return types.Int64Null()
	}
	return types.Int64Value(v)
}

func titleColor(c bluegreen.Color) string {
	return strings.ToUpper(string(c[:1])) + string(c[1:])
}

// keepDurationSpelling keeps the prior state's spelling of a healthcheck duration that
// the service reads back in Go's canonical form (1m as 1m0s, 5000ms as 5s): the same
// value, so no diff, as with an image's spelling.
func keepDurationSpelling(was, now types.Object, diags *diag.Diagnostics) types.Object {
	if was.IsNull() || was.IsUnknown() || now.IsNull() || now.IsUnknown() {
		return now
	}
	wasHC, ok := was.Attributes()["healthcheck"].(types.Object)
	nowHC, ok2 := now.Attributes()["healthcheck"].(types.Object)
	if !ok || !ok2 || wasHC.IsNull() || wasHC.IsUnknown() || nowHC.IsNull() || nowHC.IsUnknown() {
		return now
	}
	hc := maps.Clone(nowHC.Attributes())
	kept := false
	for _, k := range []string{"interval", "timeout"} {
		w, _ := wasHC.Attributes()[k].(types.String)
		n, _ := hc[k].(types.String)
		if w.IsNull() || w.IsUnknown() || n.IsNull() || w.Equal(n) {
			continue
		}
		wd, err1 := time.ParseDuration(w.ValueString())
		nd, err2 := time.ParseDuration(n.ValueString())
		if err1 == nil && err2 == nil && wd == nd {
			hc[k], kept = w, true
		}
	}
	if !kept {
		return now
	}
	newHC, d := types.ObjectValue(healthcheckAttrTypes, hc)
	diags.Append(d...)
	attrs := maps.Clone(now.Attributes())
	attrs["healthcheck"] = newHC
	obj, d := types.ObjectValue(colorAttrTypes, attrs)
	diags.Append(d...)
	return obj
}

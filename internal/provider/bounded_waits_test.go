package provider

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/testkit"
)

// A refresh is bounded by timeouts.read. With a node's Docker engine frozen (SSH
// answers, the engine's socket takes the connection and never replies), a refresh
// through it ends after the read timeout with an error naming timeouts.read, instead of
// hanging the plan until someone kills it.
func TestAccRegistrator_refreshOfAFrozenEngineTimesOut(t *testing.T) {
	requireAcc(t)
	cloud := testkit.LocalCloud(t)
	ctx := context.Background()
	nodes, node := createTestDroplet(t, "rt", "frozen")
	id, _ := strconv.Atoi(node.ID.ValueString())
	// dockerd is the node's PID 1, which ignores SIGSTOP from inside: its socket is
	// swapped for one that takes connections and never answers.
	if out, err := cloud.RunInDroplet(ctx, id, freezeEngine); err != nil {
		t.Fatalf("freezing the node's engine: %v: %s", err, out)
	}
	t.Cleanup(func() { _, _ = cloud.RunInDroplet(context.Background(), id, thawEngine) })

	reg := &registratorResource{data: nodes.data}
	const readTimeout = 3 * time.Second
	st := stateWith(t, reg, map[string]string{"id": "registrator-test", "host": "ssh://root@" + node.IPv4Address.ValueString(),
		"host_key": node.SSHHostKey.ValueString()}, map[string]string{"read": readTimeout.String()})
	start := time.Now()
	done := make(chan diag.Diagnostics, 1)
	go func() {
		resp := resource.ReadResponse{State: st}
		reg.Read(ctx, resource.ReadRequest{State: st}, &resp)
		done <- resp.Diagnostics
	}()
	var diags diag.Diagnostics
	select {
	case diags = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("a refresh through a frozen engine still runs after 2m; want it to end after timeouts.read (%s)", readTimeout)
	}
	took := time.Since(start)
	if !hasError(diags, "Refresh Timed Out", "timeouts.read") {
		t.Fatalf("a refresh through a frozen engine: %v; want an error naming timeouts.read", diags)
	}
	if took > readTimeout+10*time.Second {
		t.Errorf("the refresh ended %s after it began; want about timeouts.read (%s)", took.Round(time.Millisecond), readTimeout)
	}
	t.Logf("the refresh through a frozen engine failed after %s (timeouts.read %s)", took.Round(time.Millisecond), readTimeout)
}

// A droplet whose power is cut while a command runs on it sends nothing more (the local
// cloud cuts its network before killing it, as DigitalOcean's power_off does), so the
// command's connection would wait until the kernel gave up on it, some 15 minutes. The
// connection's keepalive goes unanswered and closes it: the command fails within an
// interval and the connect timeout (here 1 s and 3 s; 15 s and 30 s by default).
func TestAccDropletNode_commandOnANodeWhosePowerIsCutFails(t *testing.T) {
	requireAcc(t)
	ctx := context.Background()
	nodes, node := createTestDroplet(t, "ka", "cut")
	pool := testkit.PoolWith(t, conn.Options{KeepaliveInterval: time.Second, ConnectTimeout: 3 * time.Second})
	h, err := pool.Open(ctx, conn.Target{Host: "ssh://root@" + node.IPv4Address.ValueString(), HostKey: node.SSHHostKey.ValueString()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := h.Run(ctx, "sleep 600", nil)
		done <- err
	}()
	time.Sleep(time.Second) // the command runs
	id, _ := strconv.Atoi(node.ID.ValueString())
	if _, _, err := testkit.Godo(t).DropletActions.PowerOff(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes.data.cloud.WaitStatus(ctx, id, "off"); err != nil {
		t.Fatal(err)
	}
	off := time.Now()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the command on a droplet whose power was cut succeeded")
		}
		t.Logf("the command failed %s after the droplet was off: %v", time.Since(off).Round(time.Millisecond), err)
	case <-time.After(time.Minute):
		t.Fatal("a command on a droplet whose power was cut still waits after 1m; want it failed once a keepalive goes unanswered (4 s)")
	}
}

const (
	freezeEngine = `mv /var/run/docker.sock /var/run/docker.sock.real
nohup setsid python3 -c 'import socket, time
s = socket.socket(socket.AF_UNIX)
s.bind("/var/run/docker.sock")
s.listen(64)
time.sleep(3600)' >/dev/null 2>&1 </dev/null &
for i in $(seq 50); do [ -S /var/run/docker.sock ] && exit 0; sleep 0.1; done; exit 1`
	thawEngine = `pkill -f 's.bind\("/var/run/docker.sock"\)'; rm -f /var/run/docker.sock; mv /var/run/docker.sock.real /var/run/docker.sock`
)

// stateWith is a state of r holding the given string attributes and timeouts.
func stateWith(t *testing.T, r resource.Resource, attrs, timeouts map[string]string) tfsdk.State {
	t.Helper()
	ctx := context.Background()
	var sresp resource.SchemaResponse
	r.Schema(ctx, resource.SchemaRequest{}, &sresp)
	st := tfsdk.State{Schema: sresp.Schema, Raw: tftypes.NewValue(sresp.Schema.Type().TerraformType(ctx), nil)}
	for attr, v := range attrs {
		if diags := st.SetAttribute(ctx, path.Root(attr), v); diags.HasError() {
			t.Fatal(diags)
		}
	}
	for attr, v := range timeouts {
		if diags := st.SetAttribute(ctx, path.Root("timeouts").AtName(attr), v); diags.HasError() {
			t.Fatal(diags)
		}
	}
	return st
}

package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
)

// A Consul server that lost its quorum: the refresh notes it in the resource's private
// state when the servers it lost are gone (their droplets off or deleted, says the API),
// the plan then shows an update of this server, and the update runs Consul's outage
// recovery once they are proven gone for good (internal/consul/outage.go says when).

// privateQuorumLost is the private state key the refresh sets; its value is a JSON string
// saying what was seen.
const privateQuorumLost = "quorum_lost"

// privateState is the part of the framework's private state Read and ModifyPlan use.
type privateState interface {
	GetKey(ctx context.Context, key string) ([]byte, diag.Diagnostics)
	SetKey(ctx context.Context, key string, value []byte) diag.Diagnostics
}

// consulDropletLookup asks the DigitalOcean API about the droplet at an IP address.
func (d *providerData) consulDropletLookup() consul.DropletLookup {
	return func(ctx context.Context, ip string) (consul.DropletState, error) {
		if d == nil || d.cloud == nil {
			return consul.DropletUnknown, errors.New("no DigitalOcean token is configured")
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		dr, err := d.cloud.ByAddress(ctx, ip)
		switch {
		case err != nil:
			return consul.DropletUnknown, err
		case dr == nil:
			return consul.DropletDeleted, nil
		case dr.Status == "off" || dr.Status == "archive":
			return consul.DropletOff, nil
		default:
			return consul.DropletActive, nil
		}
	}
}

// noteQuorumLoss records in private whether the server, which has no leader, lost a
// majority of its voters to droplets the API reports off or deleted; a refresh never fails
// for it.
func (d *providerData) noteQuorumLoss(ctx context.Context, view consul.ClusterView, private privateState, diags *diag.Diagnostics) {
	o, leaderless, err := consul.ReadOutage(ctx, view, d.consulDropletLookup())
	switch {
	case err != nil:
		tflog.Warn(ctx, "could not assess the consul server's lost quorum", map[string]any{"error": err.Error()})
		return
	case leaderless && o.Lost(false):
		tflog.Warn(ctx, "consul quorum lost; the plan recovers this server", map[string]any{"outage": o.String()})
		diags.Append(private.SetKey(ctx, privateQuorumLost, []byte(fmt.Sprintf("%q", o.String())))...)
	default:
		diags.Append(private.SetKey(ctx, privateQuorumLost, nil)...)
	}
}

// planQuorumRecovery makes the plan update a server whose refresh found its quorum lost.
func planQuorumRecovery(ctx context.Context, private privateState, diags *diag.Diagnostics) bool {
	if private == nil {
		return false
	}
	seen, d := private.GetKey(ctx, privateQuorumLost)
	diags.Append(d...)
	if len(seen) == 0 {
		return false
	}
	attrWarning(diags, path.Root("leader"), "Consul Quorum Lost", fmt.Sprintf(
		"This Consul server has no leader, and the servers it lost are on droplets the API reports off or deleted: %s. "+
			"The apply waits until they are gone for good (their droplets deleted or replaced, as when_off = \"replace\" does in the "+
			"same apply), then runs Consul's outage recovery on this server (raft/peers.json naming the servers that remain), "+
			"so it elects itself and the replacement servers join it. It never recovers while a lost server may come back "+
			"with its data (a droplet only off, or one the API reports active).", seen))
	return true
}

// consulRecoverQuorum waits for a leader, recovering the server from a lost quorum when
// that is proven safe, and returns the container as it runs afterwards.
func (d *providerData) consulRecoverQuorum(ctx context.Context, docker consul.Engine, c *consul.Container, view consul.ClusterView, host string, join []string, diags *diag.Diagnostics) *consul.Container {
	r := &consul.OutageRecovery{
		Engine: docker, Container: c, View: view, Lookup: d.consulDropletLookup(), Join: join,
		Log: func(msg string, fields map[string]any) {
			fields["container"], fields["host"] = c.Name, host
			tflog.Warn(ctx, msg, fields)
		},
	}
	started := time.Now()
	recovered, ok, err := r.Run(ctx)
	var noQuorum *consul.NoQuorumError
	switch {
	case errors.As(err, &noQuorum):
		diags.AddError("Consul Quorum Lost", fmt.Sprintf("Consul server %s on %s: %s.\n\nThe lost servers are not proven gone for good, "+
			"so recovering would risk two clusters. Bring them back (power their droplets on), or replace them (delete their droplets, "+
			"or let when_off = \"replace\" do it), and apply again.", c.Name, host, err))
		return nil
	case err != nil:
		diags.AddError("Consul Quorum Recovery Failed", fmt.Sprintf("Consul server %s on %s: %s. Apply again: the recovery "+
			"resumes from what the server says.", c.Name, host, err))
		return nil
	case ok:
		diags.AddWarning("Consul Quorum Recovered", fmt.Sprintf("Consul server %s on %s had lost its quorum to servers that are gone "+
			"for good; it was restarted with raft/peers.json (Consul's outage recovery) after %s, so it leads and the replacement "+
			"servers join it.", c.Name, host, time.Since(started).Round(time.Second)))
	}
	return recovered
}

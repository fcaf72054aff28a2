package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
)

// requireNodeGone is for a delete that could not reach the node holding what it deletes:
// it succeeds (with a warning) only when the node is known gone for good, its droplet
// deleted or off, and otherwise fails with the next step, so Terraform never forgets
// something still running.
func (d *providerData) requireNodeGone(ctx context.Context, what, host string, diags *diag.Diagnostics) {
	status, err := d.nodeStatus(ctx, host)
	switch {
	case err != nil:
		diags.AddError("Could Not Delete: Node Unreachable", fmt.Sprintf("%s: %s does not answer, and whether its droplet is gone "+
			"could not be learned (%s). It may still run there. Bring the node back and destroy again; if the node is gone for "+
			"good, remove the resource from the state with terraform state rm.", what, host, err))
	case status == "deleted" || status == "off":
		diags.AddWarning("Deleted With Its Node", fmt.Sprintf("%s: %s does not answer and its droplet is %s, so nothing of it "+
			"runs there any more.", what, host, status))
	default:
		diags.AddError("Could Not Delete: Node Unreachable", fmt.Sprintf("%s: %s does not answer, but its droplet is %s: %s may "+
			"still run and serve there. Fix the node's SSH (or point host at another manager of the same swarm) and destroy "+
			"again; if you are sure it is gone, remove the resource from the state with terraform state rm.", what, host, status, what))
	}
}

// nodeStatus is the status of the droplet behind an ssh:// host ("deleted" when the
// account has no droplet at that address).
func (d *providerData) nodeStatus(ctx context.Context, host string) (string, error) {
	ep, err := conn.ParseEndpoint(host)
	if err != nil {
		return "", err
	}
	if ep.Scheme != conn.SchemeSSH || d.cloud == nil {
		return "", fmt.Errorf("%s is not a droplet this provider can look up (no DigitalOcean token, or not ssh://)", host)
	}
	dr, err := d.cloud.ByAddress(ctx, ep.Host)
	if err != nil {
		return "", err
	}
	if dr == nil {
		return "deleted", nil
	}
	return dr.Status, nil
}

// nodeNextStep says what the next apply does about a node that failed in the middle of
// a create, from its droplet's status as the cloud reports it: an off droplet is healed
// as its when_off says (by default replaced), a deleted one is created again, and this
// resource then goes on the new node. When err looks like the node went away (a cut
// connection, a timeout), the status is asked again for up to 10 s: a droplet that has
// just crashed or been stopped reads active for a moment. A droplet that stays up (or
// whose status the cloud cannot say) is probed: nodeProbeStep. Empty when nothing more
// useful can be said than the error itself.
func (d *providerData) nodeNextStep(ctx context.Context, host, hostKey string, err error) string {
	if err == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, serr := d.nodeStatus(ctx, host)
		switch {
		case serr == nil && status == "off":
			return "Its droplet is off: the next apply heals it as its microswarm_droplet_node's when_off says (by default, " +
				"a replacement), then creates this on the node again."
		case serr == nil && status == "deleted":
			return "No droplet of this account holds that address any more: if a microswarm_droplet_node made it, the next " +
				"apply creates that node again, then this on the new one."
		}
		if serr != nil || !nodeWentAway(err) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(time.Second):
			continue
		}
	}
	return d.nodeProbeStep(ctx, host, hostKey, err)
}

// nodeProbeStep is for a node whose droplet is up (or whose status the cloud cannot
// say) after err cut a step short: it asks the node itself, on a fresh connection, and
// says which part does not answer (SSH, or the Docker engine behind it) and what brings
// it back; the next apply resumes where the step stopped, since every step is safe to
// run again. Empty when err is not about reaching the node.
func (d *providerData) nodeProbeStep(ctx context.Context, host, hostKey string, err error) string {
	if d.pool == nil || (!nodeWentAway(err) && !engineUnreachable(err)) {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	h, perr := d.pool.Open(ctx, conn.Target{Host: host, HostKey: hostKey})
	if perr != nil {
		if !nodeUnreachable(perr) {
			return ""
		}
		return fmt.Sprintf("The node does not answer over SSH now (%s): sshd may have stopped, or something blocks port 22. "+
			"Bring SSH back (from the droplet's console: systemctl start ssh); the next apply then resumes this where it stopped. "+
			"A node that stays unreachable can be replaced: terraform apply -replace on its microswarm_droplet_node.", perr)
	}
	docker, derr := h.Docker()
	if derr == nil {
		_, derr = docker.Ping(ctx)
	}
	if derr != nil {
		return fmt.Sprintf("The node answers over SSH, but its Docker engine does not (%s). Start it (systemctl start docker "+
			"on the node); the next apply then resumes this where it stopped.", derr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "" // slow rather than cut: the error's own advice (raise the timeouts) stands
	}
	return "The connection to the node was cut, and the node answers again: the next apply resumes this where it stopped."
}

// engineUnreachable: err looks like the node's Docker engine is not there (its socket
// refuses the forwarded connection).
func engineUnreachable(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, s := range []string{"forwarding to unix", "Cannot connect to the Docker daemon", "Is the docker daemon running"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// nodeWentAway: err looks like the node stopped answering rather than refusing.
func nodeWentAway(err error) bool {
	if err == nil {
		return false
	}
	if nodeUnreachable(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"EOF", "connection reset", "broken pipe", "no route to host", "i/o timeout"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

package bluegreen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/errdefs"
	consulapi "github.com/hashicorp/consul/api"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/haproxy"
)

// HAProxy is one proxy instance reached through its Runtime API (Client, a worker's
// admin socket) and its master CLI (Master).
type HAProxy struct {
	Node    string
	Client  *haproxy.Client
	Master  *haproxy.Client
	MapPath string // the map as HAProxy names it (its path in the container)
}

// Reload asks the master to reload the configuration and waits (at most 15 s) until a
// new worker answers on the admin socket; the old one hands it the listening sockets
// and finishes its connections.
func (p *HAProxy) Reload(ctx context.Context) error {
	before, err := p.Client.ShowInfo(ctx)
	if err != nil {
		return err
	}
	if _, err := p.Master.Execute(ctx, "reload"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		if info, err := p.Client.ShowInfo(ctx); err == nil && info.Pid != before.Pid {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no new worker after the reload (the configuration may be invalid: see the proxy's log): %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var _ Proxy = (*HAProxy)(nil)

func (p *HAProxy) Name() string { return p.Node }

func (p *HAProxy) Route(ctx context.Context) (Route, error) {
	r, err := p.Client.ReadRouting(ctx, p.MapPath)
	if err != nil {
		return Route{}, err
	}
	return Route{Active: r.Active, Canary: r.CanaryPercent}, nil
}

// SetRoute writes the canary share first when it shrinks and last when it grows, so no
// request in between sends more to the other color than either route would.
func (p *HAProxy) SetRoute(ctx context.Context, r Route) error {
	current, err := p.Route(ctx)
	if err != nil {
		return err
	}
	if r.Canary < current.Canary {
		if err := p.Client.SetCanary(ctx, p.MapPath, r.Canary); err != nil {
			return err
		}
	}
	if r.Active != current.Active {
		if err := p.Client.SetActive(ctx, p.MapPath, r.Active); err != nil {
			return err
		}
	}
	if r.Canary > current.Canary {
		return p.Client.SetCanary(ctx, p.MapPath, r.Canary)
	}
	return nil
}

// Servers are the backend's server slots that hold an address, healthy when their
// check passed.
func (p *HAProxy) Servers(ctx context.Context, c Color) ([]Instance, error) {
	rows, err := p.Client.ShowStat(ctx)
	if err != nil {
		return nil, err
	}
	var out []Instance
	for _, r := range rows {
		if r.Proxy != string(c) || r.Type != haproxy.TypeServer || r.Address == "" {
			continue
		}
		host, _, err := net.SplitHostPort(r.Address)
		if err != nil {
			host = r.Address
		}
		out = append(out, Instance{ID: r.Server, Address: host, Healthy: r.Healthy(), Why: r.Status + " " + r.CheckStatus})
	}
	return out, nil
}

// Counters are the backend's totals: sessions, failures (5xx, connection and response
// errors) and sessions in flight.
func (p *HAProxy) Counters(ctx context.Context, c Color) (Counters, error) {
	rows, err := p.Client.ShowStat(ctx)
	if err != nil {
		return Counters{}, err
	}
	for _, r := range rows {
		if r.Proxy == string(c) && r.Type == haproxy.TypeBackend {
			return Counters{Requests: r.TotalSessions, Failed: r.HTTP5xx + r.ConnErrors + r.RespErrors, InFlight: r.CurrentSessions}, nil
		}
	}
	return Counters{}, nil
}

// ConsulHealth is Consul's view of a service's colors: the instances the registrator
// published under the service's name, tagged with their color.
type ConsulHealth struct {
	API     *consulapi.Client
	Service string
	// Anonymous says API carries no ACL token.
	Anonymous bool
	// Stale lets any server answer (a refresh's counts): without a leader a default read
	// waits out Consul's RPC hold (7 s) and fails. A gate reads with the leader.
	Stale bool
}

// AnonymousError is a read without a token that found nothing in a Consul whose ACLs
// deny by default: the instances may be there, hidden.
type AnonymousError struct {
	Service string
	Color   Color
}

func (e *AnonymousError) Error() string {
	return fmt.Sprintf("Consul found no instance of %s (%s) for a request without an ACL token, and its ACLs deny by default: "+
		"they hide what a request may not read, so the gate needs a token that reads services and nodes", e.Service, e.Color)
}

var _ Health = (*ConsulHealth)(nil)

func (h *ConsulHealth) Instances(ctx context.Context, c Color) ([]Instance, error) {
	q := (&consulapi.QueryOptions{AllowStale: h.Stale}).WithContext(ctx)
	entries, meta, err := h.API.Health().Service(h.Service, string(c), false, q)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 && h.Anonymous && meta != nil && meta.DefaultACLPolicy == "deny" {
		// Consul hides what an anonymous request may not read instead of refusing it:
		// say so rather than gate on a color that only looks empty.
		return nil, &AnonymousError{Service: h.Service, Color: c}
	}
	out := make([]Instance, 0, len(entries))
	for _, e := range entries {
		in := Instance{ID: e.Service.ID, Address: e.Service.Address, Healthy: e.Checks.AggregatedStatus() == consulapi.HealthPassing}
		var why []string
		for _, chk := range e.Checks {
			if chk.Status != consulapi.HealthPassing {
				why = append(why, chk.Name+": "+chk.Status+" "+strings.TrimSpace(chk.Output))
			}
		}
		in.Why = strings.Join(why, "; ")
		out = append(out, in)
	}
	return out, nil
}

// EngineTasks is a node's own Docker engine (NodeTasks): swarm labels each task's
// container with its service's ID.
type EngineTasks struct {
	Engine interface {
		ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
		ContainerKill(ctx context.Context, id, signal string) error
	}
}

var _ NodeTasks = EngineTasks{}

const (
	serviceIDLabel = "com.docker.swarm.service.id"
	taskIDLabel    = "com.docker.swarm.task.id"
)

func (t EngineTasks) Kill(ctx context.Context, serviceIDs []string) ([]string, error) {
	all, err := t.Engine.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", serviceIDLabel))})
	if err != nil {
		return nil, err
	}
	// At once: the engine answers a kill once the container has exited.
	errs := make([]error, len(all))
	stopped := make([]bool, len(all))
	var wg sync.WaitGroup
	for i, c := range all {
		if !slices.Contains(serviceIDs, c.Labels[serviceIDLabel]) {
			continue
		}
		switch c.State {
		case container.StateRunning, container.StatePaused, container.StateRestarting:
		default:
			stopped[i] = true // exited, or never started: swarm does not start it now
			continue
		}
		wg.Go(func() {
			// One that stopped or went meanwhile is what was asked.
			if err := t.Engine.ContainerKill(ctx, c.ID, "KILL"); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsConflict(err) {
				errs[i] = fmt.Errorf("container %s: %w", c.ID, err)
				return
			}
			stopped[i] = true
		})
	}
	wg.Wait()
	var tasks []string
	for i, c := range all {
		if stopped[i] && c.Labels[taskIDLabel] != "" {
			tasks = append(tasks, c.Labels[taskIDLabel])
		}
	}
	return tasks, errors.Join(errs...)
}

// SSHFiles is a node's file system through its SSH connection (NodeFiles). Paths are
// the provider's own (no user input reaches them unquoted).
type SSHFiles struct {
	Host *conn.Host
}

var _ NodeFiles = SSHFiles{}

func (f SSHFiles) Prepare(ctx context.Context, dir string, uid, gid int, file, content string) error {
	script := fmt.Sprintf("mkdir -p %[1]s && chown %[3]d:%[4]d %[1]s && if [ ! -s %[2]s ]; then cat > %[2]s.tmp && mv %[2]s.tmp %[2]s; fi",
		shellQuote(dir), shellQuote(file), uid, gid)
	_, err := f.run(ctx, script, content)
	return err
}

func (f SSHFiles) Write(ctx context.Context, file, content string) error {
	_, err := f.run(ctx, fmt.Sprintf("cat > %[1]s.tmp && mv %[1]s.tmp %[1]s", shellQuote(file)), content)
	return err
}

func (f SSHFiles) Read(ctx context.Context, file string) (string, error) {
	return f.run(ctx, fmt.Sprintf("if [ -f %[1]s ]; then cat %[1]s; fi", shellQuote(file)), "")
}

func (f SSHFiles) RemoveAll(ctx context.Context, dir string) error {
	_, err := f.run(ctx, "rm -rf -- "+shellQuote(dir), "")
	return err
}

// run runs script with stdin. Every script here is safe to repeat, so one whose
// session broke (an EOF or a reset before the command reported its exit) is tried again
// on a fresh connection; a command that ran and failed is not.
func (f SSHFiles) run(ctx context.Context, script, stdin string) (string, error) {
	return f.Host.RunIdempotent(ctx, script, stdin)
}

// SSHPorts steers a node's published ports with NAT rules in front of Docker's own, in
// Docker's nat chain (NodePorts), through its SSH connection. A rule copies the one
// Docker made for the target port (same interfaces, same container address) with the
// source port and a comment naming the tag; rules go when Docker's engine restarts, as
// Docker's own do.
type SSHPorts struct {
	Host *conn.Host
}

var _ NodePorts = SSHPorts{}

// steerScript: $1 tag, $2 from, $3 to. Inserts the new rule before removing the old
// ones of the tag, so a re-run never leaves the port unsteered for a moment.
const steerScript = `set -e
tagged() { iptables -t nat -S DOCKER | grep -E -e "--comment \"?$1\"? " || true; }
rule=$(iptables -t nat -S DOCKER | grep -e "--dport $3 " | grep -e "-j DNAT" | grep -v -e "--comment" | head -n 1)
if [ -z "$rule" ]; then echo "Docker publishes nothing on port $3 of this node" >&2; exit 3; fi
dest=${rule##*--to-destination }
old=$(tagged "$1")
if printf '%s\n' "$old" | grep -q -e "--dport $2 .*--to-destination $dest\$"; then exit 0; fi
iptables -t nat $(printf '%s\n' "$rule" | sed -e "s/^-A DOCKER /-I DOCKER 1 /" -e "s/--dport $3 /--dport $2 -m comment --comment $1 /")
printf '%s\n' "$old" | grep -e "--to-destination" | grep -v -e "--dport $2 .*--to-destination $dest\$" | sed -e 's/^-A /-D /' |
  while read -r r; do eval "iptables -t nat $r"; done
`

// unsteerScript: $1 tag.
const unsteerScript = `iptables -t nat -S DOCKER 2>/dev/null | grep -E -e "--comment \"?$1\"? " | sed -e 's/^-A /-D /' |
  while read -r r; do eval "iptables -t nat $r" || exit 1; done
`

// trackedScript: $1 port. Prints how many conntrack entries name the address of the
// container Docker publishes on the port (its own DNAT rule, not a steering one): 0 when
// none is published there, -1 when the kernel does not list its entries.
const trackedScript = `rule=$(iptables -t nat -S DOCKER | grep -e "--dport $1 " | grep -e "-j DNAT" | grep -v -e "--comment" | head -n 1)
if [ -z "$rule" ]; then echo 0; exit 0; fi
dest=${rule##*--to-destination }
if [ ! -r /proc/net/nf_conntrack ]; then echo -1; exit 0; fi
awk -v m=" src=${dest%:*} " 'index($0, m) {n++} END {print n+0}' /proc/net/nf_conntrack
`

func (p SSHPorts) Tracked(ctx context.Context, port int) (int, error) {
	out, err := SSHFiles(p).run(ctx, fmt.Sprintf("sh -c %s sh %d", shellQuote(trackedScript), port), "")
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(strings.TrimSpace(out))
}

func (p SSHPorts) Steer(ctx context.Context, tag string, from, to int) error {
	_, err := SSHFiles(p).run(ctx, fmt.Sprintf("sh -c %s sh %s %d %d", shellQuote(steerScript), shellQuote(tag), from, to), "")
	return err
}

func (p SSHPorts) Unsteer(ctx context.Context, tag string) error {
	_, err := SSHFiles(p).run(ctx, fmt.Sprintf("sh -c %s sh %s", shellQuote(unsteerScript), shellQuote(tag)), "")
	return err
}

// shellQuote quotes s as one word for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

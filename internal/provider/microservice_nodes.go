package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/microswarm/terraform-provider-microswarm/internal/bluegreen"
	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/consul"
	"github.com/microswarm/terraform-provider-microswarm/internal/haproxy"
	"github.com/microswarm/terraform-provider-microswarm/internal/swarmservice"
	"github.com/microswarm/terraform-provider-microswarm/internal/wait"
)

// deployment is a microservice's live parts as one apply reaches them.
type deployment struct {
	name string
	mgr  *client.Client
	svc  bluegreen.Service
	// nodes are the proxy nodes that answered; unreachable names those that did not
	// (their proxies keep their last route and converge on a later apply).
	nodes       []bluegreen.ProxyNode
	unreachable []string
	// urls are the endpoints, one per proxy host in the configuration's order.
	urls   []string
	health bluegreen.Health
	// openHealth opens the gate's Consul again after reach could not (reopenHealth).
	openHealth func(ctx context.Context) (bluegreen.Health, error)
	// opening, while not nil, is the gate's Consul that startHealth is opening; health is
	// read only after awaitHealth.
	opening chan bluegreen.Health
	// changed are the colors whose service this apply created or changed.
	changed map[bluegreen.Color]bool
	images  map[bluegreen.Color]string
}

func (d *deployment) proxies() []bluegreen.Proxy {
	out := make([]bluegreen.Proxy, len(d.nodes))
	for i, n := range d.nodes {
		out[i] = n.Proxy
	}
	return out
}

// proxyFault, when a test sets it, is asked before every route change on a proxy node
// and may fail it: how the acceptance tests make one proxy of three fail mid-flip or
// fail its restore, which nothing outside the provider can do on cue.
var proxyFault func(node string, r bluegreen.Route) error

type faultyProxy struct{ bluegreen.Proxy }

func (p faultyProxy) SetRoute(ctx context.Context, r bluegreen.Route) error {
	if f := proxyFault; f != nil {
		if cur, err := p.Route(ctx); err != nil || cur != r {
			if err := f(p.Name(), r); err != nil {
				return err
			}
		}
	}
	return p.Proxy.SetRoute(ctx, r)
}

// unreadableHealth is a gate whose Consul could not be opened.
type unreadableHealth struct{ err error }

func (h unreadableHealth) Instances(context.Context, bluegreen.Color) ([]bluegreen.Instance, error) {
	return nil, h.err
}

// startHealth begins to open the gate's Consul and returns at once: making its reader
// token takes several round trips to Consul, which the proxies' reads, the deployment
// and the routes' reads need not wait for. awaitHealth takes the result.
func (d *deployment) startHealth(ctx context.Context) {
	if d.openHealth == nil {
		return
	}
	opening := make(chan bluegreen.Health, 1)
	go func() {
		h, err := d.openHealth(ctx)
		if err != nil {
			h = unreadableHealth{err}
		}
		opening <- h
	}()
	d.opening = opening
}

// awaitHealth waits for the gate's Consul that startHealth began to open, if any.
func (d *deployment) awaitHealth() {
	if d.opening != nil {
		d.health = <-d.opening
		d.opening = nil
	}
}

// reopenHealth opens the gate's Consul when reach could not: the configuration need not
// order the service after the Consul servers and the registrator, and a create that runs
// beside theirs finds them up by the time it gates.
func (d *deployment) reopenHealth(ctx context.Context) {
	d.awaitHealth()
	if _, unreadable := d.health.(unreadableHealth); !unreadable || d.openHealth == nil {
		return
	}
	if h, err := d.openHealth(ctx); err == nil {
		d.health = h
	} else {
		d.health = unreadableHealth{err}
	}
}

// Reaching the proxy nodes, with or without the gate's Consul (a delete needs none).
const (
	withHealth    = true
	withoutHealth = false
)

// reach opens the manager's Consul API (when health) and every proxy node, without
// changing anything. A proxy node that does not answer is left out with a warning unless
// proxies is mustReach (an apply goes on with the others; a refresh reports it, and with
// refreshing also one whose host key changed). With mgr nil it also opens the manager's
// engine (d.mgr), beside the proxy nodes: a new provider process (every apply's) pays
// their SSH handshakes at once, not the manager's first.
func (r *microserviceResource) reach(ctx context.Context, mgr *client.Client, m *microserviceModel, proxies nodeReach, health bool, diags *diag.Diagnostics) *deployment {
	svc := serviceOf(*m)
	d := &deployment{name: svc.Name, mgr: mgr, svc: svc, changed: map[bluegreen.Color]bool{}, images: map[bluegreen.Color]string{}}
	for _, c := range bluegreen.Colors {
		if obj := m.colorObject(c); !obj.IsNull() && !obj.IsUnknown() {
			if img, ok := obj.Attributes()["image"].(types.String); ok {
				d.images[c] = img.ValueString()
			}
		}
	}
	var hosts []proxyHostModel
	diags.Append(m.ProxyHosts.ElementsAs(ctx, &hosts, false)...)
	listen := strconv.Itoa(int(m.ListenPort.ValueInt64()))
	// Every proxy node at once (an SSH handshake and an engine query each, which one after
	// another made a plan at 12 nodes wait for twelve of them), and the manager meanwhile;
	// merged in the given order.
	reached := make([]proxyReach, len(hosts))
	var wg sync.WaitGroup
	defer wg.Wait()
	// The swarm's node names, read once through the manager, name the proxy nodes
	// (swarmservice.Identify); set on every way out, so no proxy's reach waits for them.
	names := swarmservice.NewNodeNames()
	defer names.Set(nil)
	for i, ph := range hosts {
		wg.Go(func() {
			reached[i] = r.reachProxy(ctx, svc, i, ph, proxies, names)
		})
	}
	managerHost := r.data.reachNode(ctx, path.Root("host"), m.Host.ValueString(), &m.HostKey, mustReach, "", diags)
	if managerHost == nil {
		return nil
	}
	if d.mgr == nil {
		if d.mgr = dockerOf(managerHost, path.Root("host"), m.Host.ValueString(), diags); d.mgr == nil {
			return nil
		}
	}
	wg.Go(func() { names.Read(ctx, d.mgr) })
	cfg, err := r.data.consulReaderConfig("")
	if err != nil {
		diags.AddError("Invalid Consul TLS Material", err.Error())
		return nil
	}
	// Meanwhile the gate's reader, which the caller takes when it needs it (awaitHealth).
	// Making its token needs the servers; a refresh goes on without it (the passing counts
	// read 0) and a gate tries again (reopenHealth), then says why it cannot read.
	d.openHealth = func(ctx context.Context) (bluegreen.Health, error) {
		api, err := r.data.consulReader(ctx, managerHost, m.Host.ValueString(), cfg, consul.GateReader)
		if err != nil {
			return nil, fmt.Errorf("through %s: %w", m.Host.ValueString(), err)
		}
		return &bluegreen.ConsulHealth{API: api, Service: svc.Name, Anonymous: !r.data.consulHasToken()}, nil
	}
	d.health = unreadableHealth{errors.New("not opened")}
	if health {
		d.startHealth(ctx)
	}
	wg.Wait()
	for i, ph := range hosts {
		if ep, err := conn.ParseEndpoint(ph.Host.ValueString()); err == nil {
			d.urls = append(d.urls, "http://"+net.JoinHostPort(ep.Host, listen))
		}
		diags.Append(reached[i].diags...)
		switch {
		case reached[i].node != nil:
			d.nodes = append(d.nodes, *reached[i].node)
		case reached[i].diags.HasError():
		default:
			d.unreachable = append(d.unreachable, ph.Host.ValueString())
		}
	}
	if diags.HasError() {
		return nil
	}
	if len(d.nodes) == 0 && len(hosts) > 0 {
		attrError(diags, path.Root("proxy_hosts"), "No Proxy Node Reachable", fmt.Sprintf(
			"Service %s: none of the %d proxy hosts answers, so no route can be read or changed. Check the nodes, then apply again.", svc.Name, len(hosts)))
		return nil
	}
	return d
}

// proxyReach is one proxy node as reach found it: node when it answered; neither node
// nor an error in diags when it did not and that is tolerated.
type proxyReach struct {
	node  *bluegreen.ProxyNode
	diags diag.Diagnostics
}

// reachProxy opens proxy host i and asks its engine who it is.
func (r *microserviceResource) reachProxy(ctx context.Context, svc bluegreen.Service, i int, ph proxyHostModel, reach nodeReach, names *swarmservice.NodeNames) (out proxyReach) {
	at := path.Root("proxy_hosts").AtListIndex(i).AtName("host")
	hostKey := ph.HostKey
	tolerate := reach != mustReach
	h := r.data.reachNode(ctx, at, ph.Host.ValueString(), &hostKey, reach, "its proxy", &out.diags)
	if h == nil {
		return out
	}
	docker, err := h.Docker()
	var info struct{ name, nodeID string }
	if err == nil {
		info.name, info.nodeID, err = swarmservice.Identify(ctx, docker, names)
	}
	if err != nil {
		if tolerate {
			attrWarning(&out.diags, at, "Proxy Node's Docker API Unreachable", fmt.Sprintf("%s: %s; its proxy converges on a later apply.", ph.Host.ValueString(), err))
			return out
		}
		attrError(&out.diags, at, "Could Not Reach the Docker API", fmt.Sprintf("%s: %s", ph.Host.ValueString(), err))
		return out
	}
	mapPath := bluegreen.ProxyConfig(svc).MapPath
	layout := bluegreen.ProxyDeployment{Service: svc}
	socket, master, standInSocket := layout.AdminSocket(), layout.MasterSocket(), layout.StandInDir()+"/admin.sock"
	proxy := &bluegreen.HAProxy{Node: info.name, MapPath: mapPath,
		Client: &haproxy.Client{Dial: func(ctx context.Context) (net.Conn, error) { return h.DialContext(ctx, "unix", socket) }},
		Master: &haproxy.Client{Dial: func(ctx context.Context) (net.Conn, error) { return h.DialContext(ctx, "unix", master) }},
	}
	standIn := &bluegreen.HAProxy{Node: info.name + " (stand-in)", MapPath: mapPath,
		Client: &haproxy.Client{Dial: func(ctx context.Context) (net.Conn, error) { return h.DialContext(ctx, "unix", standInSocket) }},
	}
	out.node = &bluegreen.ProxyNode{Name: info.name, SwarmID: info.nodeID, Files: bluegreen.SSHFiles{Host: h},
		Proxy: faultyProxy{proxy}, ServersState: proxy.Client.ServersStateFile, Reload: proxy.Reload,
		Ports: bluegreen.SSHPorts{Host: h}, StandIn: standIn, Tasks: bluegreen.EngineTasks{Engine: docker}}
	return out
}

// desired is the deployment the model asks for; its map files start at route.
func desired(ctx context.Context, m *microserviceModel, route bluegreen.Route, diags *diag.Diagnostics) bluegreen.Desired {
	want := bluegreen.Desired{Service: serviceOf(*m), Colors: map[bluegreen.Color]bluegreen.ColorSpec{}, Route: route,
		ProxyImage: m.ProxyImage.ValueString(), ListenPort: int(m.ListenPort.ValueInt64()), Owner: microserviceOwner}
	for _, c := range bluegreen.Colors {
		obj := m.colorObject(c)
		if obj.IsNull() {
			continue
		}
		var cm colorModel
		diags.Append(obj.As(ctx, &cm, objectAsOptions)...)
		want.Colors[c] = colorSpecOf(ctx, cm, diags)
	}
	return want
}

// deployDiag maps a failed deployment step to its diagnostic.
func deployDiag(name string, err error, diags *diag.Diagnostics) {
	var de *bluegreen.DeployError
	if !errors.As(err, &de) {
		diags.AddError("Could Not Deploy", fmt.Sprintf("Service %s: %s", name, err))
		return
	}
	next := "Nothing after this step was done; the next apply continues from here."
	switch de.Step {
	case bluegreen.StepNetwork:
		attrError(diags, path.Root("network"), "Could Not Create the Network", fmt.Sprintf("%s. %s", err, next))
	case bluegreen.StepActiveRemoved:
		attrError(diags, path.Root(string(de.Color)), "Active Color Removed", fmt.Sprintf("%s.", err))
	case bluegreen.StepColor:
		attrError(diags, path.Root(string(de.Color)), "Could Not Deploy "+titleColor(de.Color), fmt.Sprintf("%s. %s", err, next))
	case bluegreen.StepConverge:
		diags.AddError("Service Did Not Converge", fmt.Sprintf("%s.\n\nA task that stays `starting` has not passed its HEALTHCHECK; a `rejected` "+
			"one could not start (image name? the node's registry?). Raise the timeouts if the nodes are only slow. %s", err, next))
	default:
		diags.AddError("Could Not Deploy the Proxy", fmt.Sprintf("Service %s, step %s: %s. %s", name, de.Step, err, next))
	}
}

// mapFiles are the proxy nodes' routing map files, a switch's Persist.
func (d *deployment) mapFiles() bluegreen.MapFiles {
	return bluegreen.MapFiles{Nodes: d.nodes, Path: bluegreen.ProxyDeployment{Service: d.svc}.MapFile()}
}

// awaitGate waits, bounded by ctx, until color c passes the switch gate.
func (d *deployment) awaitGate(ctx context.Context, c bluegreen.Color, minHealthy int) error {
	return wait.Until(ctx, wait.Options{What: fmt.Sprintf("%s to have %d healthy instances", c, minHealthy), Interval: 250 * time.Millisecond, MaxInterval: time.Second},
		func(ctx context.Context) (bool, string, error) {
			d.reopenHealth(ctx)
			err := bluegreen.Gate(ctx, d.health, d.proxies(), c, minHealthy)
			if err != nil {
				return false, err.Error(), nil //nolint:nilerr // not yet: the reason is the state a timeout reports
			}
			return true, "", nil
		})
}

// awaitStandby waits (at most a minute) until every replica of a color this apply
// deployed and that is not active passes in Consul and in the proxies, so the apply ends
// with the standby ready to take over; one that does not get there is a warning.
func (d *deployment) awaitStandby(ctx context.Context, m *microserviceModel, diags *diag.Diagnostics) {
	if diags.HasError() {
		return // a refused or rolled back switch already says what is wrong
	}
	active := bluegreen.Color(m.Active.ValueString())
	for _, c := range bluegreen.Colors {
		obj := m.colorObject(c)
		if c == active || !d.changed[c] || obj.IsNull() {
			continue
		}
		replicas, _ := obj.Attributes()["replicas"].(types.Int64)
		if replicas.ValueInt64() < 1 {
			continue
		}
		waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
		err := d.awaitGate(waitCtx, c, int(replicas.ValueInt64()))
		cancel()
		if err != nil {
			attrWarning(diags, path.Root(string(c)), "Standby Color Not Healthy", fmt.Sprintf(
				"Service %s: %s is deployed but not every instance is healthy yet: %s. A switch to it will be gated on min_healthy.", d.name, c, err))
		}
	}
}

// liveMixed is live_color when the proxies disagree: the next plan converges them.
const liveMixed = "mixed"

// observe reads the route, the tasks and Consul's view into the computed attributes.
func (d *deployment) observe(ctx context.Context, m *microserviceModel) {
	d.awaitHealth()
	urls := make([]attr.Value, len(d.urls))
	for i, u := range d.urls {
		urls[i] = types.StringValue(u)
	}
	m.Endpoints = types.ListValueMust(types.StringType, urls)
	m.LiveColor, m.LiveVersion = types.StringNull(), types.StringNull()
	switch s := bluegreen.Summarise(ctx, d.proxies()); {
	case len(s.Stray) > 0:
		m.LiveColor = types.StringValue(liveMixed)
	case s.OK:
		m.LiveColor = types.StringValue(string(s.Agreed.Active))
		m.LiveVersion = types.StringValue(bluegreen.Version(d.images[s.Agreed.Active]))
	}
	for _, c := range bluegreen.Colors {
		running, passing := int64(0), int64(0)
		if live, err := swarmservice.Get(ctx, d.mgr, d.svc.ServiceName(c)); err == nil {
			if st, err := swarmservice.ReadStatus(ctx, d.mgr, live); err == nil {
				running = int64(st.Running)
			}
		}
		if instances, err := d.health.Instances(ctx, c); err == nil {
			for _, in := range instances {
				if in.Healthy {
					passing++
				}
			}
		}
		if c == bluegreen.Blue {
			m.BlueRunning, m.BluePassing = types.Int64Value(running), types.Int64Value(passing)
		} else {
			m.GreenRunning, m.GreenPassing = types.Int64Value(running), types.Int64Value(passing)
		}
	}
}

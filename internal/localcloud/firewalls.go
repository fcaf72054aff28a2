package localcloud

import (
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Cloud firewalls, with DigitalOcean's request and response shapes (godo's Firewall); the
// nodes enforce them (nodefirewall.go).

type firewall struct {
	ID            string         `json:"id"`
	Name          string         `json:"name"`
	InboundRules  []inboundRule  `json:"inbound_rules"`
	OutboundRules []outboundRule `json:"outbound_rules"`
	DropletIDs    []int          `json:"droplet_ids"`
	Tags          []string       `json:"tags"`
	CreatedAt     time.Time      `json:"created_at"`
}

type inboundRule struct {
	Protocol string     `json:"protocol"`
	Ports    string     `json:"ports"`
	Sources  ruleTarget `json:"sources"`
}

type outboundRule struct {
	Protocol     string     `json:"protocol"`
	Ports        string     `json:"ports"`
	Destinations ruleTarget `json:"destinations"`
}

// ruleTarget is a rule's sources or destinations; empty lists are left out, as DO does.
type ruleTarget struct {
	Addresses        []string `json:"addresses,omitempty"`
	Tags             []string `json:"tags,omitempty"`
	DropletIDs       []int    `json:"droplet_ids,omitempty"`
	LoadBalancerUIDs []string `json:"load_balancer_uids,omitempty"`
	KubernetesIDs    []string `json:"kubernetes_ids,omitempty"`
}

type firewallRequest struct {
	Name          string         `json:"name"`
	InboundRules  []inboundRule  `json:"inbound_rules"`
	OutboundRules []outboundRule `json:"outbound_rules"`
	DropletIDs    []int          `json:"droplet_ids"`
	Tags          []string       `json:"tags"`
}

type firewallJSON struct {
	ID             string         `json:"id"`
	Name           string         `json:"name"`
	Status         string         `json:"status"`
	InboundRules   []inboundRule  `json:"inbound_rules"`
	OutboundRules  []outboundRule `json:"outbound_rules"`
	DropletIDs     []int          `json:"droplet_ids"`
	Tags           []string       `json:"tags"`
	CreatedAt      string         `json:"created_at"`
	PendingChanges []struct{}     `json:"pending_changes"`
}

var firewallNamePattern = regexp.MustCompile(`^[a-zA-Z0-9.-]{1,255}$`)

func renderFirewall(f *firewall) firewallJSON {
	return firewallJSON{
		ID: f.ID, Name: f.Name, Status: "succeeded",
		InboundRules: append([]inboundRule{}, f.InboundRules...), OutboundRules: append([]outboundRule{}, f.OutboundRules...),
		DropletIDs: append([]int{}, f.DropletIDs...), Tags: append([]string{}, f.Tags...),
		CreatedAt: f.CreatedAt.Format(time.RFC3339), PendingChanges: []struct{}{},
	}
}

// normalizePorts checks a rule's protocol and ports and returns the ports as DO reports
// them: "0" for every port ("all", or an ICMP rule), else as given.
func normalizePorts(protocol, ports string) (string, error) {
	switch protocol {
	case "icmp":
		return "0", nil
	case "tcp", "udp":
	default:
		return "", errUnprocessable("protocol must be one of tcp, udp or icmp")
	}
	if ports == "" {
		return "", errUnprocessable("ports is required for protocol %s", protocol)
	}
	if ports == "all" || ports == "0" {
		return "0", nil
	}
	if _, _, ok := portRange(ports); !ok {
		return "", errUnprocessable("ports %q is not a port or a range of ports", ports)
	}
	return ports, nil
}

// portRange parses "22" or "8300-8302"; "0" (every port) gives 0, 0.
func portRange(ports string) (from, to int, ok bool) {
	if ports == "0" {
		return 0, 0, true
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	from, err := strconv.Atoi(lo)
	if err != nil || from < 1 || from > 65535 {
		return 0, 0, false
	}
	to = from
	if isRange {
		if to, err = strconv.Atoi(hi); err != nil || to < from || to > 65535 {
			return 0, 0, false
		}
	}
	return from, to, true
}

func validTarget(t ruleTarget) error {
	for _, a := range t.Addresses {
		if _, err := netip.ParsePrefix(a); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(a); err != nil {
			return errUnprocessable("%q is not an IP address or a CIDR range", a)
		}
	}
	for _, tag := range t.Tags {
		if err := validTagName(tag); err != nil {
			return err
		}
	}
	return nil
}

// firewallFromRequest validates a create or update request; c.mu must be held.
func (c *Cloud) firewallFromRequestLocked(req firewallRequest) (*firewall, error) {
	if !firewallNamePattern.MatchString(req.Name) {
		return nil, errUnprocessable("name must be 1 to 255 characters long and may only contain letters, numbers, dashes and periods")
	}
	if len(req.InboundRules)+len(req.OutboundRules) == 0 {
		return nil, errUnprocessable("a firewall needs at least one rule")
	}
	f := &firewall{Name: req.Name, InboundRules: []inboundRule{}, OutboundRules: []outboundRule{}, DropletIDs: []int{}, Tags: []string{}}
	for _, rule := range req.InboundRules {
		ports, err := normalizePorts(rule.Protocol, rule.Ports)
		if err != nil {
			return nil, err
		}
		if err := validTarget(rule.Sources); err != nil {
			return nil, err
		}
		rule.Ports = ports
		f.InboundRules = append(f.InboundRules, rule)
	}
	for _, rule := range req.OutboundRules {
		ports, err := normalizePorts(rule.Protocol, rule.Ports)
		if err != nil {
			return nil, err
		}
		if err := validTarget(rule.Destinations); err != nil {
			return nil, err
		}
		rule.Ports = ports
		f.OutboundRules = append(f.OutboundRules, rule)
	}
	for _, id := range req.DropletIDs {
		if c.st.droplet(id) == nil {
			return nil, errUnprocessable("droplet %d does not exist", id)
		}
		if !containsInt(f.DropletIDs, id) {
			f.DropletIDs = append(f.DropletIDs, id)
		}
	}
	for _, tag := range req.Tags {
		if err := validTagName(tag); err != nil {
			return nil, err
		}
		if !containsString(f.Tags, tag) {
			f.Tags = append(f.Tags, tag)
		}
	}
	return f, nil
}

func (st *state) firewall(id string) *firewall {
	for _, f := range st.Firewalls {
		if f.ID == id {
			return f
		}
	}
	return nil
}

func (c *Cloud) listFirewalls(w http.ResponseWriter, r *http.Request) error {
	c.mu.Lock()
	all := make([]firewallJSON, 0, len(c.st.Firewalls))
	for _, f := range c.st.Firewalls {
		all = append(all, renderFirewall(f))
	}
	c.mu.Unlock()
	page, l, m := paginate(r, all)
	writeJSON(w, http.StatusOK, map[string]any{"firewalls": page, "links": l, "meta": m})
	return nil
}

func (c *Cloud) getFirewall(w http.ResponseWriter, r *http.Request) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.st.firewall(r.PathValue("id"))
	if f == nil {
		return errNotFound()
	}
	writeJSON(w, http.StatusOK, map[string]any{"firewall": renderFirewall(f)})
	return nil
}

func (c *Cloud) createFirewall(w http.ResponseWriter, r *http.Request) error {
	var req firewallRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := c.firewallFromRequestLocked(req)
	if err != nil {
		return err
	}
	f.ID, f.CreatedAt = newUUID(), time.Now().UTC().Truncate(time.Second)
	c.st.Firewalls = append(c.st.Firewalls, f)
	c.saveLocked()
	c.enforceFirewalls()
	rendered := renderFirewall(f)
	rendered.Status = "waiting" // DO answers a create before the rules reach the droplets
	writeJSON(w, http.StatusAccepted, map[string]any{"firewall": rendered})
	return nil
}

func (c *Cloud) updateFirewall(w http.ResponseWriter, r *http.Request) error {
	var req firewallRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.st.firewall(r.PathValue("id"))
	if old == nil {
		return errNotFound()
	}
	f, err := c.firewallFromRequestLocked(req)
	if err != nil {
		return err
	}
	f.ID, f.CreatedAt = old.ID, old.CreatedAt
	*old = *f
	c.saveLocked()
	c.enforceFirewalls()
	writeJSON(w, http.StatusOK, map[string]any{"firewall": renderFirewall(old)})
	return nil
}

func (c *Cloud) deleteFirewall(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.firewall(id) == nil {
		return errNotFound()
	}
	c.st.Firewalls = slices.DeleteFunc(c.st.Firewalls, func(f *firewall) bool { return f.ID == id })
	c.saveLocked()
	c.enforceFirewalls()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func containsInt(list []int, n int) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

func removeInt(list []int, n int) []int {
	kept := make([]int, 0, len(list))
	for _, x := range list {
		if x != n {
			kept = append(kept, x)
		}
	}
	return kept
}

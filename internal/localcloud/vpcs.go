package localcloud

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"time"
)

// VPCs: every region has a default VPC (defaultVPCID) on the instance's own vpc network;
// a VPC made through the API gets a Docker network of its own, so its droplets' private
// addresses are in its ip_range and its traffic stays apart from other VPCs', as on DO.

// customVPC is a VPC created through the API, as the state keeps it.
type customVPC struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Region      string    `json:"region"`
	IPRange     string    `json:"ip_range"`
	Gateway     string    `json:"gateway"`
	Network     string    `json:"network"` // the Docker network behind it
	CreatedAt   time.Time `json:"created_at"`
}

func (v *customVPC) bridge() bridgeNetwork {
	return bridgeNetwork{name: v.Network, subnet: netip.MustParsePrefix(v.IPRange), gateway: netip.MustParseAddr(v.Gateway)}
}

// vpcNetworks makes and removes the Docker networks behind custom VPCs (the node backend;
// a fake in tests that run without an engine).
type vpcNetworks interface {
	// createVPCNetwork makes a network for VPC id with subnet ipRange, or one it picks when
	// ipRange is the zero prefix.
	createVPCNetwork(ctx context.Context, id string, ipRange netip.Prefix) (bridgeNetwork, error)
	removeVPCNetwork(ctx context.Context, name string) error
}

const roleCustomVPC = "custom-vpc"

func (n *nodeBackend) createVPCNetwork(ctx context.Context, id string, ipRange netip.Prefix) (bridgeNetwork, error) {
	labels := map[string]string{labelInstance: n.instance, labelRole: roleCustomVPC, labelVPC: id}
	return n.createNetwork(ctx, n.instance+"-vpc-"+id[:8], labels, ipRange)
}

func (n *nodeBackend) removeVPCNetwork(ctx context.Context, name string) error {
	return n.docker.NetworkRemove(ctx, name)
}

type vpcRequest struct {
	Name        string `json:"name"`
	Region      string `json:"region"`
	Description string `json:"description"`
	IPRange     string `json:"ip_range"`
	Default     *bool  `json:"default"`
}

var vpcNamePattern = regexp.MustCompile(`^[a-zA-Z0-9.-]{1,255}$`)

func (c *Cloud) renderCustomVPC(v *customVPC) vpcJSON {
	return vpcJSON{
		ID: v.ID, URN: "do:vpc:" + v.ID, Name: v.Name, Description: v.Description, Region: v.Region,
		IPRange: v.IPRange, CreatedAt: v.CreatedAt.Format(time.RFC3339),
	}
}

// vpcNetworkLocked returns the network of a droplet's VPC; c.mu must be held.
func (c *Cloud) vpcNetworkLocked(id string) bridgeNetwork {
	if v := c.st.vpc(id); v != nil {
		return v.bridge()
	}
	return c.nodes.vpc
}

func (c *Cloud) listVPCs(w http.ResponseWriter, r *http.Request) error {
	vpcs := make([]vpcJSON, 0, len(regionNames))
	for _, rn := range regionNames {
		vpcs = append(vpcs, c.vpcFor(rn.slug))
	}
	c.mu.Lock()
	for _, v := range c.st.VPCs {
		vpcs = append(vpcs, c.renderCustomVPC(v))
	}
	c.mu.Unlock()
	page, l, m := paginate(r, vpcs)
	writeJSON(w, http.StatusOK, map[string]any{"vpcs": page, "links": l, "meta": m})
	return nil
}

func (c *Cloud) getVPC(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if region, ok := vpcRegion(id); ok {
		writeJSON(w, http.StatusOK, map[string]any{"vpc": c.vpcFor(region)})
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.st.vpc(id)
	if v == nil {
		return errNotFound()
	}
	writeJSON(w, http.StatusOK, map[string]any{"vpc": c.renderCustomVPC(v)})
	return nil
}

// vpcNameTakenLocked reports whether another VPC (default ones included) has the name.
func (c *Cloud) vpcNameTakenLocked(name, except string) bool {
	for _, rn := range regionNames {
		if "default-"+rn.slug == name {
			return true
		}
	}
	for _, v := range c.st.VPCs {
		if v.Name == name && v.ID != except {
			return true
		}
	}
	return false
}

// vpcRangeTakenLocked reports whether p overlaps the range of the default VPCs or another VPC.
func (c *Cloud) vpcRangeTakenLocked(p netip.Prefix) bool {
	if c.nodes.vpc.subnet.Overlaps(p) || c.nodes.public.subnet.Overlaps(p) {
		return true
	}
	for _, v := range c.st.VPCs {
		if netip.MustParsePrefix(v.IPRange).Overlaps(p) {
			return true
		}
	}
	return false
}

func (c *Cloud) createVPC(w http.ResponseWriter, r *http.Request) error {
	var req vpcRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if !vpcNamePattern.MatchString(req.Name) {
		return errUnprocessable("name must be 1 to 255 characters long and may only contain letters, numbers, dashes and periods")
	}
	if _, ok := lookupRegion(req.Region); !ok {
		return errUnprocessable("region is not valid")
	}
	if len(req.Description) > 255 {
		return errUnprocessable("description must be at most 255 characters long")
	}
	var ipRange netip.Prefix
	if req.IPRange != "" {
		p, err := netip.ParsePrefix(req.IPRange)
		if err != nil || !p.Addr().Is4() || !p.Addr().IsPrivate() || p.Bits() < 16 || p.Bits() > 28 {
			return errUnprocessable("ip_range must be a private (RFC 1918) IPv4 range in CIDR notation, from /16 to /28")
		}
		ipRange = p.Masked()
	}
	c.mu.Lock()
	if c.vpcNameTakenLocked(req.Name, "") {
		c.mu.Unlock()
		return errUnprocessable("a VPC with the name %s already exists", req.Name)
	}
	if ipRange.IsValid() && c.vpcRangeTakenLocked(ipRange) {
		c.mu.Unlock()
		return errUnprocessable("ip_range %s overlaps an existing range", ipRange)
	}
	c.mu.Unlock()

	id := newUUID()
	nw, err := c.vpcNets.createVPCNetwork(r.Context(), id, ipRange)
	if err != nil {
		if ipRange.IsValid() {
			return errUnprocessable("ip_range %s is not available: %v", ipRange, err)
		}
		return err
	}
	v := &customVPC{
		ID: id, Name: req.Name, Description: req.Description, Region: req.Region,
		IPRange: nw.subnet.String(), Gateway: nw.gateway.String(), Network: nw.name,
		CreatedAt: time.Now().UTC().Truncate(time.Second),
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.vpcNameTakenLocked(req.Name, "") { // made meanwhile by a concurrent request
		_ = c.vpcNets.removeVPCNetwork(context.WithoutCancel(r.Context()), nw.name)
		return errUnprocessable("a VPC with the name %s already exists", req.Name)
	}
	c.st.VPCs = append(c.st.VPCs, v)
	c.saveLocked()
	writeJSON(w, http.StatusCreated, map[string]any{"vpc": c.renderCustomVPC(v)})
	return nil
}

// updateVPC serves PUT (name required) and PATCH (only what is given).
func (c *Cloud) updateVPC(w http.ResponseWriter, r *http.Request) error {
	var req vpcRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	id := r.PathValue("id")
	if _, ok := vpcRegion(id); ok {
		return &apiError{http.StatusForbidden, "forbidden", "default VPCs cannot be modified"}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.st.vpc(id)
	if v == nil {
		return errNotFound()
	}
	if req.Name != "" || r.Method == http.MethodPut {
		if !vpcNamePattern.MatchString(req.Name) {
			return errUnprocessable("name must be 1 to 255 characters long and may only contain letters, numbers, dashes and periods")
		}
		if c.vpcNameTakenLocked(req.Name, v.ID) {
			return errUnprocessable("a VPC with the name %s already exists", req.Name)
		}
		v.Name = req.Name
	}
	if req.Description != "" || r.Method == http.MethodPut {
		v.Description = req.Description
	}
	if req.Default != nil && *req.Default {
		return errUnprocessable("making a VPC the region's default is not supported here")
	}
	c.saveLocked()
	writeJSON(w, http.StatusOK, map[string]any{"vpc": c.renderCustomVPC(v)})
	return nil
}

func (c *Cloud) deleteVPC(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, ok := vpcRegion(id); ok {
		return &apiError{http.StatusForbidden, "forbidden", "default VPCs cannot be deleted"}
	}
	c.mu.Lock()
	v := c.st.vpc(id)
	if v == nil {
		c.mu.Unlock()
		return errNotFound()
	}
	for _, d := range c.st.Droplets {
		if d.VPCUUID == id {
			c.mu.Unlock()
			// DO answers 403 while a VPC has members; clients retry.
			return &apiError{http.StatusForbidden, "forbidden", "Can not delete VPC with members"}
		}
	}
	network := v.Network
	c.mu.Unlock()

	if err := c.vpcNets.removeVPCNetwork(r.Context(), network); err != nil {
		return &apiError{http.StatusConflict, "conflict", fmt.Sprintf("the VPC is still in use: %v", err)}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.VPCs = slices.DeleteFunc(c.st.VPCs, func(v *customVPC) bool { return v.ID == id })
	c.saveLocked()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// vpcRegionLocked returns the region of any VPC, default or custom; c.mu must be held.
func (c *Cloud) vpcRegionLocked(id string) (string, bool) {
	if region, ok := vpcRegion(id); ok {
		return region, true
	}
	if v := c.st.vpc(id); v != nil {
		return v.Region, true
	}
	return "", false
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

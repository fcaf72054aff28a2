package localcloud

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// dropletCreateRequest accepts both the single (name) and the multiple (names) form.
type dropletCreateRequest struct {
	Name              string            `json:"name"`
	Names             []string          `json:"names"`
	Region            string            `json:"region"`
	Size              string            `json:"size"`
	Image             json.RawMessage   `json:"image"`
	SSHKeys           []json.RawMessage `json:"ssh_keys"`
	Backups           bool              `json:"backups"`
	IPv6              bool              `json:"ipv6"`
	PrivateNetworking bool              `json:"private_networking"`
	Monitoring        bool              `json:"monitoring"`
	UserData          string            `json:"user_data"`
	Tags              []string          `json:"tags"`
	VPCUUID           string            `json:"vpc_uuid"`
}

const (
	maxNamesPerCreate = 10
	maxUserDataBytes  = 64 * 1024
)

var hostnamePattern = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?$`)

func validDropletName(name string) error {
	if strings.TrimSpace(name) == "" {
		return errUnprocessable("Name is required.")
	}
	if len(name) > 255 || !hostnamePattern.MatchString(name) {
		return errUnprocessable("Name Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)")
	}
	return nil
}

// createPlan is a validated create request.
type createPlan struct {
	names   []string
	size    sizeJSON
	image   imageJSON
	keys    []*sshKey
	vpcUUID string
	tags    []string
	req     dropletCreateRequest
	multi   bool
}

// planCreate validates a create request against the catalog and the account; c.mu must be held.
func (c *Cloud) planCreateLocked(req dropletCreateRequest) (*createPlan, error) {
	p := &createPlan{req: req}
	switch {
	case len(req.Names) > 0:
		p.names, p.multi = req.Names, true
	case req.Name != "":
		p.names = []string{req.Name}
	default:
		return nil, errUnprocessable("Name is required.")
	}
	if len(p.names) > maxNamesPerCreate {
		return nil, errUnprocessable("You can only create up to %d Droplets at once.", maxNamesPerCreate)
	}
	for _, name := range p.names {
		if err := validDropletName(name); err != nil {
			return nil, err
		}
	}
	if _, ok := lookupRegion(req.Region); !ok {
		return nil, errUnprocessable("You specified an invalid region for Droplet creation.")
	}
	var ok bool
	if p.size, ok = lookupSize(req.Size); !ok {
		return nil, errUnprocessable("You specified an invalid size for Droplet creation.")
	}
	if p.image, ok = lookupImage(rawScalar(req.Image)); !ok {
		return nil, errUnprocessable("You specified an invalid image for Droplet creation.")
	}
	for _, raw := range req.SSHKeys {
		ref := rawScalar(raw)
		key := c.findKeyLocked(ref)
		if key == nil {
			return nil, errUnprocessable("%s is not a valid SSH key id or fingerprint.", ref)
		}
		p.keys = append(p.keys, key)
	}
	p.vpcUUID = defaultVPCID(req.Region)
	if req.VPCUUID != "" {
		region, ok := c.vpcRegionLocked(req.VPCUUID)
		if !ok {
			return nil, errUnprocessable("Failed to resolve VPC: %s is not a valid VPC.", req.VPCUUID)
		}
		if region != req.Region {
			return nil, errUnprocessable("The VPC %s is not in region %s.", req.VPCUUID, req.Region)
		}
		p.vpcUUID = req.VPCUUID
	}
	for _, t := range req.Tags {
		if err := validTagName(t); err != nil {
			return nil, err
		}
		if !containsString(p.tags, t) {
			p.tags = append(p.tags, t)
		}
	}
	if len(req.UserData) > maxUserDataBytes {
		return nil, errUnprocessable("user_data is limited to %d bytes.", maxUserDataBytes)
	}
	if _, err := parseCloudConfig(req.UserData); err != nil {
		return nil, errUnprocessable("%v", err)
	}
	if len(c.st.Droplets)+len(p.names) > c.cfg.DropletLimit {
		return nil, errUnprocessable("creating this/these droplet(s) will exceed your droplet limit")
	}
	return p, nil
}

// rawScalar turns a JSON string or number into its text ("docker-20-04", "123").
func rawScalar(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return string(raw)
}

func (c *Cloud) createDroplets(w http.ResponseWriter, r *http.Request) error {
	var req dropletCreateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	// Addresses other containers hold on our networks are read before taking the lock.
	takenPublic, err := c.nodes.usedAddresses(r.Context(), c.nodes.public)
	if err != nil {
		return err
	}
	c.mu.Lock()
	vpcNet := c.vpcNetworkLocked(req.VPCUUID)
	c.mu.Unlock()
	takenPrivate, err := c.nodes.usedAddresses(r.Context(), vpcNet)
	if err != nil {
		return err
	}

	c.mu.Lock()
	p, err := c.planCreateLocked(req)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	for _, d := range c.st.Droplets {
		markTaken(takenPublic, d.PublicIP)
		markTaken(takenPrivate, d.PrivateIP)
	}
	// Everything that can fail happens before the state changes.
	publicIPs, err := allocateAddresses(c.nodes.public, takenPublic, len(p.names))
	if err != nil {
		c.mu.Unlock()
		return err
	}
	if c.vpcNetworkLocked(p.vpcUUID) != vpcNet { // the VPC went away meanwhile
		c.mu.Unlock()
		return errUnprocessable("Failed to resolve VPC: %s is not a valid VPC.", req.VPCUUID)
	}
	privateIPs, err := allocateAddresses(vpcNet, takenPrivate, len(p.names))
	if err != nil {
		c.mu.Unlock()
		return err
	}
	seed, err := c.seedFor(p.keys, req.UserData)
	if err != nil {
		c.mu.Unlock()
		return err
	}

	var specs []nodeSpec
	var created []*droplet
	var actionLinks []actionLink
	now := time.Now().UTC().Truncate(time.Second)
	for i, name := range p.names {
		publicIP, privateIP := publicIPs[i], privateIPs[i]
		d := &droplet{
			ID: c.st.NextDropletID, Name: name, Region: req.Region, Size: p.size.Slug, Disk: p.size.Disk,
			Image: p.image.Slug, Tags: append([]string{}, p.tags...), VPCUUID: p.vpcUUID, UserData: req.UserData,
			Features: dropletFeatures(req), Status: statusNew, CreatedAt: now,
			PublicIP: publicIP.String(), PrivateIP: privateIP.String(),
		}
		for _, k := range p.keys {
			d.SSHKeyIDs = append(d.SSHKeyIDs, k.ID)
		}
		c.st.NextDropletID++
		c.st.Droplets = append(c.st.Droplets, d)
		a := c.st.newAction("create", d, now)
		rel := "create"
		if p.multi {
			rel = "multiple_create"
		}
		actionLinks = append(actionLinks, actionLink{ID: a.ID, Rel: rel, HREF: baseURL(r) + "v2/actions/" + strconv.Itoa(a.ID)})
		// The container is built from a snapshot: the API may change d meanwhile.
		snapshot := *d
		snapshot.Tags = append([]string{}, d.Tags...)
		specs = append(specs, nodeSpec{droplet: &snapshot, publicIP: publicIP, privateIP: privateIP, vpc: vpcNet, seed: seed})
		c.provisioning[d.ID] = make(chan struct{})
		created = append(created, d)
	}
	for _, t := range p.tags {
		c.st.addTag(t)
	}
	rendered := make([]dropletJSON, len(created))
	dones := make([]chan struct{}, len(created))
	for i, d := range created {
		rendered[i] = c.renderDroplet(d)
		dones[i] = c.provisioning[d.ID]
	}
	c.saveLocked()
	c.enforceFirewalls() // rules naming its tags now include its addresses
	c.mu.Unlock()

	for i, spec := range specs {
		c.tasks.Go(func() { c.provision(spec, dones[i]) })
	}
	l := links{Actions: actionLinks}
	if p.multi {
		writeJSON(w, http.StatusAccepted, map[string]any{"droplets": rendered, "links": l})
	} else {
		writeJSON(w, http.StatusAccepted, map[string]any{"droplet": rendered[0], "links": l})
	}
	return nil
}

// allocateAddresses picks n free addresses of nw and marks them taken.
func allocateAddresses(nw bridgeNetwork, taken map[netip.Addr]bool, n int) ([]netip.Addr, error) {
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		addr, err := freeAddress(nw, taken)
		if err != nil {
			return nil, errUnprocessable("No addresses are left in this region.")
		}
		taken[addr] = true
		addrs[i] = addr
	}
	return addrs, nil
}

func markTaken(taken map[netip.Addr]bool, ip string) {
	if addr, err := netip.ParseAddr(ip); err == nil {
		taken[addr] = true
	}
}

func dropletFeatures(req dropletCreateRequest) []string {
	features := []string{"private_networking"}
	if req.Backups {
		features = append(features, "backups")
	}
	if req.IPv6 {
		features = append(features, "ipv6")
	}
	if req.Monitoring {
		features = append(features, "monitoring")
	}
	return features
}

// seedFor builds the /etc/microswarm tar the node's entrypoint reads on first boot.
func (c *Cloud) seedFor(keys []*sshKey, userData string) ([]byte, error) {
	authorized := make([]string, len(keys))
	for i, k := range keys {
		authorized[i] = k.PublicKey
	}
	mirror := c.nodes.public.gateway.String() + ":" + strconv.Itoa(mirrorPort)
	files, err := seedFiles(authorized, mirror, userData)
	if err != nil {
		return nil, errUnprocessable("%v", err)
	}
	return seedTar(files)
}

// provision creates the droplet's container in the background, as DO builds a droplet
// after answering the create request.
func (c *Cloud) provision(spec nodeSpec, done chan struct{}) {
	id := spec.droplet.ID
	defer func() {
		c.mu.Lock()
		delete(c.provisioning, id)
		c.mu.Unlock()
		close(done)
	}()
	// Not cancelled by Close: an engine call cut short can still leave a container behind
	// that nobody knows about. Creating one takes about a second.
	ctx := context.WithoutCancel(c.ctx)
	containerID, err := c.nodes.createNode(ctx, spec)
	if orphan := c.recordProvisioned(id, containerID, err); orphan {
		if err := c.nodes.removeNode(ctx, containerID); err != nil {
			c.logf("droplet %d: %v", id, err)
		}
	}
}

// recordProvisioned attaches a new container to its droplet and reports whether the droplet
// was deleted meanwhile, leaving the container for the caller to remove.
func (c *Cloud) recordProvisioned(id int, containerID string, err error) (orphan bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.st.droplet(id)
	if err != nil {
		if c.ctx.Err() == nil {
			c.logf("droplet %d: %v", id, err)
		}
		if a := c.st.pendingAction(id); a != nil && d != nil {
			a.finish(actionErrored, time.Now())
		}
		c.saveLocked()
		return false
	}
	if d == nil {
		return true
	}
	d.ContainerID = containerID
	c.awaitActiveLocked(d)
	c.saveLocked()
	return false
}

func (c *Cloud) getDroplet(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "id")
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.st.droplet(id)
	if d == nil {
		return errNotFound()
	}
	writeJSON(w, http.StatusOK, map[string]any{"droplet": c.renderDroplet(d)})
	return nil
}

func (c *Cloud) listDroplets(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	tag, name := q.Get("tag_name"), q.Get("name")
	lag := c.faults.getManners().ListLag
	c.mu.Lock()
	var matched []dropletJSON
	for _, d := range c.sortedDropletsLocked() {
		if tag != "" && time.Since(d.CreatedAt) < lag {
			continue // real manners: a new droplet lists by tag only after a while
		}
		if (tag == "" || d.hasTag(tag)) && (name == "" || strings.EqualFold(d.Name, name)) {
			matched = append(matched, c.renderDroplet(d))
		}
	}
	c.mu.Unlock()
	page, l, m := paginate(r, matched)
	writeJSON(w, http.StatusOK, map[string]any{"droplets": page, "links": l, "meta": m})
	return nil
}

func (c *Cloud) sortedDropletsLocked() []*droplet {
	all := append([]*droplet{}, c.st.Droplets...)
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	return all
}

func (c *Cloud) deleteDroplet(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "id")
	if err != nil {
		return err
	}
	c.mu.Lock()
	d := c.st.droplet(id)
	if d == nil {
		c.mu.Unlock()
		return errNotFound()
	}
	containerID, provisioning := c.forgetDropletLocked(d)
	c.mu.Unlock()

	if err := c.removeForgotten(r.Context(), containerID, provisioning); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (c *Cloud) deleteDropletsByTag(w http.ResponseWriter, r *http.Request) error {
	tag := r.URL.Query().Get("tag_name")
	if tag == "" {
		return errNotFound()
	}
	c.mu.Lock()
	type forgotten struct {
		containerID  string
		provisioning <-chan struct{}
	}
	var doomed []forgotten
	for _, d := range c.sortedDropletsLocked() {
		if d.hasTag(tag) {
			containerID, provisioning := c.forgetDropletLocked(d)
			doomed = append(doomed, forgotten{containerID, provisioning})
		}
	}
	c.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(doomed))
	for i, f := range doomed {
		wg.Go(func() { errs[i] = c.removeForgotten(r.Context(), f.containerID, f.provisioning) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// forgetDropletLocked removes d from the state. It returns the container for the caller to
// remove or, while the droplet is still being built, a channel closed once provisioning
// has removed it. c.mu must be held.
func (c *Cloud) forgetDropletLocked(d *droplet) (containerID string, provisioning <-chan struct{}) {
	c.stopWaitingLocked(d.ID)
	if a := c.st.pendingAction(d.ID); a != nil {
		a.finish(actionErrored, time.Now())
	}
	c.st.removeDroplet(d.ID)
	for _, f := range c.st.Firewalls { // as on DO, a deleted droplet leaves its firewalls
		f.DropletIDs = removeInt(f.DropletIDs, d.ID)
	}
	c.saveLocked()
	c.enforceFirewalls() // rules naming it by tag or id change
	if ch, ok := c.provisioning[d.ID]; ok {
		return "", ch
	}
	return d.ContainerID, nil
}

// removeForgotten removes a forgotten droplet's container, so that when a delete request
// returns, the machine is gone, as on DO.
func (c *Cloud) removeForgotten(ctx context.Context, containerID string, provisioning <-chan struct{}) error {
	if provisioning != nil {
		select {
		case <-provisioning:
		case <-ctx.Done():
		}
		return nil
	}
	return c.nodes.removeNode(context.WithoutCancel(ctx), containerID)
}

type dropletJSON struct {
	ID               int          `json:"id"`
	Name             string       `json:"name"`
	Memory           int          `json:"memory"`
	Vcpus            int          `json:"vcpus"`
	Disk             int          `json:"disk"`
	Locked           bool         `json:"locked"`
	Status           string       `json:"status"`
	Kernel           *struct{}    `json:"kernel"`
	CreatedAt        string       `json:"created_at"`
	Features         []string     `json:"features"`
	BackupIDs        []int        `json:"backup_ids"`
	NextBackupWindow *struct{}    `json:"next_backup_window"`
	SnapshotIDs      []int        `json:"snapshot_ids"`
	Image            imageJSON    `json:"image"`
	VolumeIDs        []string     `json:"volume_ids"`
	Size             sizeJSON     `json:"size"`
	SizeSlug         string       `json:"size_slug"`
	Networks         networksJSON `json:"networks"`
	Region           regionJSON   `json:"region"`
	Tags             []string     `json:"tags"`
	VPCUUID          string       `json:"vpc_uuid"`
}

type networksJSON struct {
	V4 []networkV4JSON `json:"v4"`
	V6 []struct{}      `json:"v6"`
}

type networkV4JSON struct {
	IPAddress string `json:"ip_address"`
	Netmask   string `json:"netmask"`
	Gateway   string `json:"gateway"`
	Type      string `json:"type"`
}

// renderDroplet is d as the API shows it; c.mu must be held.
func (c *Cloud) renderDroplet(d *droplet) dropletJSON {
	size, _ := lookupSize(d.Size)
	image, _ := lookupImage(d.Image)
	region, _ := lookupRegion(d.Region)
	nets := networksJSON{V4: []networkV4JSON{}, V6: []struct{}{}}
	// Like DO, addresses show once the machine exists, not in the create response.
	if d.ContainerID != "" {
		vpc := c.vpcNetworkLocked(d.VPCUUID)
		nets.V4 = []networkV4JSON{
			{IPAddress: d.PrivateIP, Netmask: vpc.netmask(), Gateway: vpc.gateway.String(), Type: "private"},
			{IPAddress: d.PublicIP, Netmask: c.nodes.public.netmask(), Gateway: c.nodes.public.gateway.String(), Type: "public"},
		}
	}
	tags := append([]string{}, d.Tags...)
	status := d.Status
	if status == statusActive && time.Since(d.CreatedAt) < c.faults.getManners().NewFor {
		status = "new" // real manners: DigitalOcean reports a droplet new for a while after its create
	}
	return dropletJSON{
		ID: d.ID, Name: d.Name, Memory: size.Memory, Vcpus: size.Vcpus, Disk: d.Disk,
		Status: status, CreatedAt: d.CreatedAt.UTC().Format(time.RFC3339),
		Features: append([]string{}, d.Features...), BackupIDs: []int{}, SnapshotIDs: []int{},
		Image: image, VolumeIDs: []string{}, Size: size, SizeSlug: size.Slug, Networks: nets,
		Region: region, Tags: tags, VPCUUID: d.VPCUUID,
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

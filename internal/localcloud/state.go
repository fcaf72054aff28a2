package localcloud

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// state is everything the emulator must remember across restarts; it is saved to
// <StateDir>/state.json after every change.
type state struct {
	NextDropletID int          `json:"next_droplet_id"`
	NextActionID  int          `json:"next_action_id"`
	NextKeyID     int          `json:"next_key_id"`
	Keys          []*sshKey    `json:"keys"`
	Droplets      []*droplet   `json:"droplets"`
	Actions       []*action    `json:"actions"`
	Tags          []string     `json:"tags"`
	VPCs          []*customVPC `json:"vpcs,omitempty"`
	Firewalls     []*firewall  `json:"firewalls,omitempty"`
}

type sshKey struct {
	ID          int    `json:"id"`
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
	PublicKey   string `json:"public_key"`
}

type droplet struct {
	ID          int       `json:"id"`
	Name        string    `json:"name"`
	Region      string    `json:"region"`
	Size        string    `json:"size"`
	Disk        int       `json:"disk"` // a resize without disk keeps the old disk
	Image       string    `json:"image"`
	Tags        []string  `json:"tags"`
	VPCUUID     string    `json:"vpc_uuid"`
	UserData    string    `json:"user_data,omitempty"`
	SSHKeyIDs   []int     `json:"ssh_key_ids,omitempty"`
	Features    []string  `json:"features"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
	ContainerID string    `json:"container_id,omitempty"`
	PublicIP    string    `json:"public_ip"`
	PrivateIP   string    `json:"private_ip"`
}

type action struct {
	ID           int        `json:"id"`
	Status       string     `json:"status"`
	Type         string     `json:"type"`
	StartedAt    time.Time  `json:"started_at"`
	CompletedAt  *time.Time `json:"completed_at"`
	ResourceID   int        `json:"resource_id"`
	ResourceType string     `json:"resource_type"`
	RegionSlug   string     `json:"region_slug"`
}

const (
	statusNew    = "new"
	statusActive = "active"
	statusOff    = "off"

	actionInProgress = "in-progress"
	actionCompleted  = "completed"
	actionErrored    = "errored"

	// maxKeptActions bounds the action history; DO keeps it forever, tests do not need to.
	maxKeptActions = 5000
)

// newState starts ids at realistic magnitudes so clients see DO-like numbers.
func newState() *state {
	return &state{NextDropletID: 400000001, NextActionID: 2000000001, NextKeyID: 41000001}
}

func stateFile(dir string) string { return filepath.Join(dir, "state.json") }

func loadState(dir string) (*state, error) {
	data, err := os.ReadFile(stateFile(dir))
	if errors.Is(err, os.ErrNotExist) {
		return newState(), nil
	}
	if err != nil {
		return nil, err
	}
	st := newState()
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("%s: %w", stateFile(dir), err)
	}
	return st, nil
}

// save writes the state atomically, so a crash never leaves half a file.
func (st *state) save(dir string) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := stateFile(dir) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, stateFile(dir))
}

func (st *state) droplet(id int) *droplet {
	for _, d := range st.Droplets {
		if d.ID == id {
			return d
		}
	}
	return nil
}

func (st *state) vpc(id string) *customVPC {
	for _, v := range st.VPCs {
		if v.ID == id {
			return v
		}
	}
	return nil
}

func (st *state) dropletByContainer(containerID string) *droplet {
	for _, d := range st.Droplets {
		if d.ContainerID != "" && d.ContainerID == containerID {
			return d
		}
	}
	return nil
}

func (st *state) removeDroplet(id int) {
	kept := st.Droplets[:0]
	for _, d := range st.Droplets {
		if d.ID != id {
			kept = append(kept, d)
		}
	}
	st.Droplets = kept
}

func (st *state) action(id int) *action {
	for _, a := range st.Actions {
		if a.ID == id {
			return a
		}
	}
	return nil
}

func (st *state) newAction(typ string, d *droplet, now time.Time) *action {
	a := &action{
		ID: st.NextActionID, Status: actionInProgress, Type: typ, StartedAt: now,
		ResourceID: d.ID, ResourceType: "droplet", RegionSlug: d.Region,
	}
	st.NextActionID++
	st.Actions = append(st.Actions, a)
	if len(st.Actions) > maxKeptActions {
		st.Actions = st.Actions[len(st.Actions)-maxKeptActions:]
	}
	return a
}

// pendingAction returns the droplet's action still in progress, if any.
func (st *state) pendingAction(dropletID int) *action {
	for _, a := range st.Actions {
		if a.ResourceID == dropletID && a.ResourceType == "droplet" && a.Status == actionInProgress {
			return a
		}
	}
	return nil
}

func (a *action) finish(status string, now time.Time) {
	if a.Status != actionInProgress {
		return
	}
	a.Status = status
	a.CompletedAt = &now
}

func (st *state) addTag(name string) {
	for _, t := range st.Tags {
		if t == name {
			return
		}
	}
	st.Tags = append(st.Tags, name)
}

func (st *state) hasTag(name string) bool {
	for _, t := range st.Tags {
		if t == name {
			return true
		}
	}
	return false
}

func (d *droplet) hasTag(name string) bool {
	for _, t := range d.Tags {
		if t == name {
			return true
		}
	}
	return false
}

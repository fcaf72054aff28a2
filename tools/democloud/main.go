// Command democloud asks the local cloud's DigitalOcean API about the demo's droplets,
// for `make demo-break` and the heal report of `make demo`:
//
//	democloud off             prints "ID NAME" for every droplet that is off
//	democloud break [NAME]    powers off a worker of the demo (the first by name, or NAME);
//	                          prints "NAME ID ROLE IP AT", AT the power-off call's Unix time
//	democloud healed FILE     for each "ID NAME" line of FILE (an earlier `off`), says what
//	                          became of that node; exit 1 if one is still off
//
// break and healed read the examples/local `nodes` output (`terraform output -json nodes`)
// on stdin. DIGITALOCEAN_API_URL and DIGITALOCEAN_TOKEN come from the environment, and the
// API URL must be a loopback address: this never acts on a real cloud.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/godo"

	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "democloud:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: democloud off | break [NAME] | healed FILE")
	}
	c, err := client()
	if err != nil {
		return err
	}
	switch args[0] {
	case "off":
		off, err := offDroplets(ctx, c)
		if err != nil {
			return err
		}
		for _, d := range off {
			fmt.Fprintf(stdout, "%d %s\n", d.ID, d.Name)
		}
		return nil
	case "break":
		nodes, err := readNodes(stdin)
		if err != nil {
			return err
		}
		name := ""
		if len(args) > 1 {
			name = args[1]
		}
		return breakWorker(ctx, c, nodes, name, stdout)
	case "healed":
		if len(args) != 2 {
			return errors.New("usage: democloud healed FILE")
		}
		nodes, err := readNodes(stdin)
		if err != nil {
			return err
		}
		return healed(ctx, c, nodes, args[1], stdout)
	}
	return fmt.Errorf("unknown command %q (off, break, healed)", args[0])
}

// client is the provider's own API client, on the local cloud only.
func client() (*droplet.Client, error) {
	api := os.Getenv("DIGITALOCEAN_API_URL")
	u, err := url.Parse(api)
	if api == "" || err != nil {
		return nil, errors.New("DIGITALOCEAN_API_URL is not set to the local cloud (source .demo/localcloud.env)")
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("DIGITALOCEAN_API_URL %s is not a loopback address: democloud acts on the local cloud only", api)
	}
	return droplet.NewClient(droplet.ClientOptions{Token: os.Getenv("DIGITALOCEAN_TOKEN"), BaseURL: api})
}

func offDroplets(ctx context.Context, c *droplet.Client) ([]godo.Droplet, error) {
	var off []godo.Droplet
	opt := &godo.ListOptions{PerPage: 200}
	for {
		page, resp, err := c.Godo().Droplets.List(ctx, opt)
		if err != nil {
			return nil, fmt.Errorf("listing droplets: %w", err)
		}
		for _, d := range page {
			if d.Status == "off" {
				off = append(off, d)
			}
		}
		if resp.Links == nil || resp.Links.IsLastPage() {
			break
		}
		p, err := resp.Links.CurrentPage()
		if err != nil {
			return nil, err
		}
		opt.Page = p + 1
	}
	slices.SortFunc(off, func(a, b godo.Droplet) int { return strings.Compare(a.Name, b.Name) })
	return off, nil
}

// node is one entry of the examples/local `nodes` output.
type node struct {
	DropletID string `json:"droplet_id"`
	Role      string `json:"role"`
	PrivateIP string `json:"private_ip"`
}

func readNodes(r io.Reader) (map[string]node, error) {
	var nodes map[string]node
	if err := json.NewDecoder(r).Decode(&nodes); err != nil {
		return nil, fmt.Errorf("reading the nodes output on stdin: %w", err)
	}
	if len(nodes) == 0 {
		return nil, errors.New("the nodes output is empty: is the demo up?")
	}
	return nodes, nil
}

// breakWorker powers off the named node, or the first worker by name that is on, and
// waits until the API says it is off.
func breakWorker(ctx context.Context, c *droplet.Client, nodes map[string]node, name string, stdout io.Writer) error {
	var target string
	for _, n := range slices.Sorted(maps.Keys(nodes)) {
		if (name == "" && nodes[n].Role == "worker") || n == name {
			id, err := strconv.Atoi(nodes[n].DropletID)
			if err != nil {
				return fmt.Errorf("node %s: droplet id %q: %w", n, nodes[n].DropletID, err)
			}
			d, err := c.Get(ctx, id)
			if err != nil {
				return fmt.Errorf("node %s: %w", n, err)
			}
			if d.Status == "off" && name == "" {
				continue
			}
			target = n
			break
		}
	}
	if target == "" {
		if name != "" {
			return fmt.Errorf("no node %q in the nodes output", name)
		}
		return errors.New("no worker is on: nothing left to break (run make demo to heal)")
	}
	n := nodes[target]
	id, _ := strconv.Atoi(n.DropletID)
	at := time.Now()
	if _, _, err := c.Godo().DropletActions.PowerOff(ctx, id); err != nil {
		return fmt.Errorf("power_off of droplet %d (%s): %w", id, target, err)
	}
	if _, err := c.WaitStatus(ctx, id, "off"); err != nil {
		return err
	}
	// The power-off call's time, last: what a heal is timed from (bench/heal.sh).
	fmt.Fprintf(stdout, "%s %d %s %s %.3f\n", target, id, n.Role, n.PrivateIP, float64(at.UnixMilli())/1000)
	return nil
}

// healed says, for each droplet that was off, what the nodes output and the API say of
// that node now. It fails if one is still off or gone without a successor.
func healed(ctx context.Context, c *droplet.Client, nodes map[string]node, file string, stdout io.Writer) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	var failed []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		oldID, name, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok {
			continue
		}
		n, inState := nodes[name]
		if !inState {
			failed = append(failed, fmt.Sprintf("%s (droplet %s) was off and is no longer a node of the demo", name, oldID))
			continue
		}
		id, err := strconv.Atoi(n.DropletID)
		if err != nil {
			return fmt.Errorf("node %s: droplet id %q: %w", name, n.DropletID, err)
		}
		d, err := c.Get(ctx, id)
		if err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
		switch {
		case d.Status != "active":
			failed = append(failed, fmt.Sprintf("%s (droplet %d) is %s: the apply did not replace it", name, id, d.Status))
		case n.DropletID == oldID:
			fmt.Fprintf(stdout, "%s was off; droplet %s is on again (not replaced)\n", name, oldID)
		default:
			old := "deleted"
			if prev, err := strconv.Atoi(oldID); err == nil {
				if o, err := c.Get(ctx, prev); err == nil {
					old = "still there, " + o.Status
				} else if !errors.Is(err, droplet.ErrNotFound) {
					return err
				}
			}
			fmt.Fprintf(stdout, "%s was off; replaced by droplet %d (active; the old droplet %s is %s)\n", name, id, oldID, old)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

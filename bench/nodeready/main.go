// Command nodeready measures, on the local cloud, how long a droplet takes from the
// create request to `active`, and to a ready Docker host (SSH with the pinned host key,
// then the Docker API), the way microswarm_droplet_node waits. It prints medians.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/microswarm/terraform-provider-microswarm/internal/conn"
	"github.com/microswarm/terraform-provider-microswarm/internal/droplet"
	"github.com/microswarm/terraform-provider-microswarm/internal/localcloud"
)

func main() {
	rounds := flag.Int("rounds", 5, "droplets to create, one after another")
	flag.Parse()
	if err := run(*rounds); err != nil {
		fmt.Fprintln(os.Stderr, "nodeready:", err)
		os.Exit(1)
	}
}

func run(rounds int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cloud, err := localcloud.Start(ctx, localcloud.Config{Name: fmt.Sprintf("bench%d", os.Getpid()), Logf: func(string, ...any) {}})
	if err != nil {
		return err
	}
	defer cloud.Close(context.WithoutCancel(ctx))

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	pool, err := conn.NewPool(conn.Options{PrivateKey: pem.EncodeToMemory(block)})
	if err != nil {
		return err
	}
	defer pool.Close()
	client, err := droplet.NewClient(droplet.ClientOptions{Token: cloud.Token(), BaseURL: cloud.URL()})
	if err != nil {
		return err
	}
	publicKey := conn.AuthorizedKey(signer.PublicKey())
	fingerprint, err := client.EnsureSSHKey(ctx, "bench", publicKey, ssh.FingerprintLegacyMD5(signer.PublicKey()))
	if err != nil {
		return err
	}

	var toActive, toReady []time.Duration
	for i := range rounds {
		hostKey, err := droplet.NewHostKey()
		if err != nil {
			return err
		}
		userData, _, err := droplet.WithHostKey("", hostKey)
		if err != nil {
			return err
		}
		start := time.Now()
		d, _, err := client.Create(ctx, droplet.Spec{Name: fmt.Sprintf("bench-%d", i), Region: "nyc3", Size: "s-1vcpu-1gb",
			Image: "docker-20-04", SSHKeys: []string{fingerprint}, UserData: userData})
		if err != nil {
			return err
		}
		if d, err = client.WaitStatus(ctx, d.ID, "active"); err != nil {
			return err
		}
		active := time.Since(start)
		host := conn.Endpoint{Scheme: conn.SchemeSSH, User: "root", Host: d.PublicIPv4, Port: 22}.String()
		if _, err := droplet.WaitReady(ctx, pool, conn.Target{Host: host, HostKey: hostKey.Public}); err != nil {
			return err
		}
		ready := time.Since(start)
		toActive, toReady = append(toActive, active), append(toReady, ready)
		fmt.Printf("droplet %d: active after %s, ready Docker host after %s\n", i, active.Round(time.Millisecond), ready.Round(time.Millisecond))
		if err := client.Delete(ctx, d.ID); err != nil {
			return err
		}
	}
	fmt.Printf("median over %d droplets: create -> active %s, create -> ready Docker host %s\n",
		rounds, median(toActive).Round(time.Millisecond), median(toReady).Round(time.Millisecond))
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

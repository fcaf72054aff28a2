package registrator

import (
	"slices"
	"testing"

	"github.com/docker/docker/api/types/swarm"
)

func TestDeploymentReadsBackFromItsSpec(t *testing.T) {
	t.Parallel()
	for name, d := range map[string]Deployment{
		"defaults": {Name: "registrator", Image: DefaultImage, Backend: "consul://127.0.0.1:8500", Cleanup: true, Resync: 30,
			Deregister: DeregisterAlways, RetryAttempts: -1, RetryInterval: 2000},
		"everything": {Name: "reg", Image: "gliderlabs/registrator:v7", Backend: "consul-tls://127.0.0.1:8501", Internal: true, Explicit: true,
			Resync: 0, Tags: []string{"a", "b"}, Deregister: DeregisterOnSuccess, RetryAttempts: 3, RetryInterval: 500,
			ExtraArgs: []string{"-ttl=30", "-useIpFromLabel=ip"}, Constraints: []string{"node.role==worker"},
			TokenSecret: &swarm.SecretReference{SecretID: "s1", SecretName: "reg-consul-token-abc"},
			TLSSecrets: []*swarm.SecretReference{
				{SecretID: "s2", SecretName: "reg-consul-ca-abc", File: &swarm.SecretReferenceFileTarget{Name: "consul_ca.pem"}},
				{SecretID: "s3", SecretName: "reg-consul-client-key-abc", File: &swarm.SecretReferenceFileTarget{Name: "consul_client_key.pem"}},
			}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			spec := d.Spec()
			if spec.Mode.Global == nil || spec.TaskTemplate.Networks[0].Target != "host" {
				t.Fatalf("not a global host-network service: %+v", spec)
			}
			if m := spec.TaskTemplate.ContainerSpec.Mounts[0]; m.Source != "/var/run/docker.sock" || !m.ReadOnly {
				t.Errorf("docker socket mount %+v", m)
			}
			if d.TokenSecret != nil && !slices.Contains(spec.TaskTemplate.ContainerSpec.Env, "CONSUL_HTTP_TOKEN_FILE="+TokenFile) {
				t.Errorf("token file not passed: %v", spec.TaskTemplate.ContainerSpec.Env)
			}
			for _, ref := range d.TLSSecrets {
				if env := TLSFiles[ref.File.Name] + "=/run/secrets/" + ref.File.Name; !slices.Contains(spec.TaskTemplate.ContainerSpec.Env, env) {
					t.Errorf("%s not passed: %v", env, spec.TaskTemplate.ContainerSpec.Env)
				}
			}
			got, err := DeploymentFromSpec(spec)
			if err != nil {
				t.Fatal(err)
			}
			if (got.TokenSecret == nil) != (d.TokenSecret == nil) || len(got.TLSSecrets) != len(d.TLSSecrets) ||
				(d.TokenSecret != nil && got.TokenSecret.SecretID != d.TokenSecret.SecretID) {
				t.Errorf("secrets read back: token %+v, TLS %d; want %+v, %d", got.TokenSecret, len(got.TLSSecrets), d.TokenSecret, len(d.TLSSecrets))
			}
			if got.Image != d.Image || got.Backend != d.Backend || got.Internal != d.Internal || got.Explicit != d.Explicit ||
				got.Cleanup != d.Cleanup || got.Resync != d.Resync || got.Deregister != d.Deregister ||
				got.RetryAttempts != d.RetryAttempts || got.RetryInterval != d.RetryInterval ||
				!slices.Equal(got.Tags, d.Tags) || !slices.Equal(got.ExtraArgs, d.ExtraArgs) || !slices.Equal(got.Constraints, d.Constraints) {
				t.Errorf("read back %+v\nfrom %+v", got, d)
			}
		})
	}
}

func TestDeploymentFromSpecEditedOutOfBand(t *testing.T) {
	t.Parallel()
	spec := Deployment{Name: "r", Image: DefaultImage, Backend: "consul://127.0.0.1:8500", Resync: 30}.Spec()
	spec.TaskTemplate.ContainerSpec.Args = []string{"-resync=abc", "consul://127.0.0.1:8500"}
	if _, err := DeploymentFromSpec(spec); err == nil {
		t.Error("a garbled -resync read back without error")
	}
	spec.TaskTemplate.ContainerSpec.Args = nil
	if _, err := DeploymentFromSpec(spec); err == nil {
		t.Error("a spec without a backend read back without error")
	}
}

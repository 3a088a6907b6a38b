package verify

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
)

// kustomizeDir is the kustomize base, seen from this package.
const kustomizeDir = "../k8s"

// The API groups a deploy file may use; an object of any other kind fails
// to decode (add its group here when a manifest needs it).
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, networkingv1.AddToScheme,
		policyv1.AddToScheme, rbacv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strict decodes YAML or JSON into the registered types and fails on
// unknown and duplicate fields.
var strict = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

// render is `kubectl kustomize deploy/k8s`.
func render(t *testing.T) []byte {
	t.Helper()
	out, err := exec.Command("kubectl", "kustomize", kustomizeDir).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("kubectl kustomize %s: %v\n%s", kustomizeDir, err, exit.Stderr)
		}
		t.Fatalf("kubectl kustomize %s: %v", kustomizeDir, err)
	}
	return out
}

// decodeAll decodes every document of a YAML stream strictly.
func decodeAll(data []byte) ([]runtime.Object, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objects []runtime.Object
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objects, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, gvk, err := strict.Decode(doc, nil, nil)
		if err != nil {
			name := "document"
			if gvk != nil {
				name = gvk.Kind
			}
			return nil, &decodeError{name: name, err: err}
		}
		objects = append(objects, obj)
	}
}

type decodeError struct {
	name string
	err  error
}

func (e *decodeError) Error() string { return e.name + ": " + e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// deployment is the rendered base, one object of each kind it must have.
type deployment struct {
	statefulSet   *appsv1.StatefulSet
	service       *corev1.Service
	configMap     *corev1.ConfigMap
	secret        *corev1.Secret
	networkPolicy *networkingv1.NetworkPolicy
}

func load(t *testing.T) deployment {
	t.Helper()
	objects, err := decodeAll(render(t))
	if err != nil {
		t.Fatalf("strict decoding of the rendered base: %v", err)
	}
	var d deployment
	seen := map[string]int{}
	for _, obj := range objects {
		switch o := obj.(type) {
		case *appsv1.StatefulSet:
			d.statefulSet = o
			seen["StatefulSet"]++
		case *corev1.Service:
			d.service = o
			seen["Service"]++
		case *corev1.ConfigMap:
			d.configMap = o
			seen["ConfigMap"]++
		case *corev1.Secret:
			d.secret = o
			seen["Secret"]++
		case *networkingv1.NetworkPolicy:
			d.networkPolicy = o
			seen["NetworkPolicy"]++
		default:
			t.Errorf("unexpected object %T", obj)
		}
	}
	for _, kind := range []string{"StatefulSet", "Service", "ConfigMap", "Secret", "NetworkPolicy"} {
		if seen[kind] != 1 {
			t.Fatalf("%d %s objects rendered, want 1", seen[kind], kind)
		}
	}
	return d
}

func TestRenderedObjectsDecodeStrictly(t *testing.T) {
	load(t)
}

// The negative self-check: the same decoder refuses a misspelled field, a
// field at the wrong level, and a kind it does not know, so the test above
// cannot pass by decoding loosely.
func TestStrictDecodingRefusesMistakes(t *testing.T) {
	rendered := string(render(t))
	for name, c := range map[string]struct{ old, new, want string }{
		"misspelled field": {"readOnlyRootFilesystem:", "readOnlyRootFileSystem:", `unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem"`},
		"field misplaced":  {"  serviceName: tunneld\n", "  serviceName: tunneld\n  port: 4522\n", `unknown field "spec.port"`},
		"duplicate field":  {"  replicas: 1\n", "  replicas: 1\n  replicas: 2\n", `"replicas"`},
		"unknown kind":     {"kind: NetworkPolicy", "kind: NetworkPolicyy", "no kind"},
	} {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(rendered, c.old) {
				t.Fatalf("the rendered base has no %q to change", c.old)
			}
			_, err := decodeAll([]byte(strings.Replace(rendered, c.old, c.new, 1)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("decoding with %q: err %v, want one containing %q", c.new, err, c.want)
			}
		})
	}
}

// flagValue is the value after flag in args, or "".
func flagValue(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

func TestStatefulSetRunsTunneldAsTheIssueAsks(t *testing.T) {
	d := load(t)
	sts := d.statefulSet
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 1 {
		t.Errorf("replicas %v, want 1: one tunneld per state volume", sts.Spec.Replicas)
	}
	pod := sts.Spec.Template.Spec
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod securityContext must run as a non-root uid: %+v", psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile must be RuntimeDefault: %+v", psc)
	}
	all := append(slices.Clone(pod.InitContainers), pod.Containers...)
	for _, c := range all {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s: no securityContext", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s: allowPrivilegeEscalation must be false", c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s: readOnlyRootFilesystem must be true", c.Name)
		case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
			t.Errorf("%s: capabilities must drop ALL and add none", c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() ||
			c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: cpu and memory requests and limits must be set", c.Name)
		}
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want tunneld alone", len(pod.Containers))
	}
	c := pod.Containers[0]
	args := c.Args
	if flagValue(args, "--listen") != "0.0.0.0:4522" || flagValue(args, "--token-file") == "" {
		t.Errorf("args must listen on 0.0.0.0:4522 behind --token-file: %q", args)
	}
	if flagValue(args, "--log-format") != "json" {
		t.Errorf("args must log JSON: %q", args)
	}
	// kubelet's gRPC probes speak plaintext, and the API serves TLS: the
	// probes are native gRPC probes of the health listener, which serves
	// grpc.health.v1 alone.
	health := flagValue(args, "--health-listen")
	healthHost, healthPort, _ := strings.Cut(health, ":")
	if healthHost != "0.0.0.0" || healthPort == "" {
		t.Fatalf("args must serve health on 0.0.0.0:PORT (--health-listen), for kubelet on the pod's IP: %q", args)
	}
	probes := map[string]struct {
		probe   *corev1.Probe
		service string
	}{
		"startup":   {c.StartupProbe, ""},
		"liveness":  {c.LivenessProbe, ""},
		"readiness": {c.ReadinessProbe, "readiness"},
	}
	for name, p := range probes {
		probe := p.probe
		switch {
		case probe == nil || probe.GRPC == nil:
			t.Errorf("%s probe must be a native gRPC probe: %+v", name, probe)
		case fmt.Sprint(probe.GRPC.Port) != healthPort:
			t.Errorf("%s probe asks port %d, not the --health-listen port %s", name, probe.GRPC.Port, healthPort)
		case ptr.Deref(probe.GRPC.Service, "") != p.service:
			t.Errorf("%s probe asks service %q, want %q", name, ptr.Deref(probe.GRPC.Service, ""), p.service)
		}
	}
	if flagValue(args, "--tls-cert") == "" || flagValue(args, "--tls-key") == "" {
		t.Errorf("a non-loopback API needs TLS: %q", args)
	}
	// The state volume and the spill volume are where the flags point.
	mountOf := func(volume string) string {
		for _, m := range c.VolumeMounts {
			if m.Name == volume {
				return m.MountPath
			}
		}
		return ""
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("want one volumeClaimTemplate, the state")
	}
	state := mountOf(sts.Spec.VolumeClaimTemplates[0].Name)
	if state == "" || !strings.HasPrefix(flagValue(args, "--state-dir"), state) {
		t.Errorf("--state-dir %q is not on the claimed volume (mounted at %q)", flagValue(args, "--state-dir"), state)
	}
	writable := map[string]bool{}
	for _, v := range pod.Volumes {
		if v.EmptyDir != nil {
			writable[v.Name] = true
		}
	}
	spill := flagValue(args, "--spill-dir")
	ok := false
	for _, m := range c.VolumeMounts {
		if writable[m.Name] && !m.ReadOnly && strings.HasPrefix(spill, m.MountPath+"/") {
			ok = true
		}
	}
	if !ok {
		t.Errorf("--spill-dir %q is not on a writable emptyDir", spill)
	}
	// Every Service port reaches a named container port the NetworkPolicy
	// lets in.
	names := map[string]int32{}
	for _, p := range c.Ports {
		names[p.Name] = p.ContainerPort
	}
	allowed := map[int32]bool{}
	for _, rule := range d.networkPolicy.Spec.Ingress {
		if len(rule.From) == 0 {
			t.Errorf("an ingress rule with no from lets every pod in")
		}
		for _, p := range rule.Ports {
			allowed[p.Port.IntVal] = true
		}
	}
	// Only kubelet, from the node, probes: no pod is let in to the health
	// port, and the Service does not carry it.
	if port := names["health"]; fmt.Sprint(port) != healthPort || allowed[port] {
		t.Errorf("container port \"health\" %d must be the --health-listen port %s and not let in by the NetworkPolicy", port, healthPort)
	}
	for _, p := range d.service.Spec.Ports {
		if p.TargetPort.StrVal == "health" {
			t.Errorf("service port %s carries the health port", p.Name)
		}
		port, found := names[p.TargetPort.StrVal]
		if !found {
			t.Errorf("service port %s targets %q, no port of the container", p.Name, p.TargetPort.String())
		}
		if !allowed[port] {
			t.Errorf("service port %s (container %d) is not let in by the NetworkPolicy", p.Name, port)
		}
	}
	egress := map[int32]bool{}
	for _, rule := range d.networkPolicy.Spec.Egress {
		for _, p := range rule.Ports {
			egress[p.Port.IntVal] = true
		}
	}
	if len(egress) != 2 || !egress[22] || !egress[53] {
		t.Errorf("egress must be SSH (22) and DNS (53) only: %v", egress)
	}
}

// The init container's command and tunneld's args run here against the
// rendered ConfigMap and Secret, every path moved under a temp dir: the
// copy of the secrets works and tunneld accepts its flags and config.
func TestManifestFlagsPassCheckConfig(t *testing.T) {
	d := load(t)
	c, m := podOnDisk(t, d, false)
	for _, flag := range []string{"--identity", "--known-hosts", "--token-file", "--tls-key"} {
		path, _ := m.remap(flagValue(c.Args, flag))
		info, err := os.Stat(path)
		if err != nil {
			t.Fatalf("%s %s: %v", flag, flagValue(c.Args, flag), err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s %s is mode %o: tunneld refuses files others may read", flag, flagValue(c.Args, flag), info.Mode().Perm())
		}
	}
	got := checkConfig(t, m, c.Args)
	if !strings.HasSuffix(got, "ok (1 hosts, 1 tunnels)") {
		t.Errorf("tunneld --check-config: %s, want 1 host and 1 tunnel", got)
	}
}

// The pod's tunneld, with real secrets in the Secret's place, serves, and
// its startup, liveness and readiness probes pass as kubelet runs them;
// the same probe of the API's port fails (TLS), which is why the health
// listener exists. SIGTERM then stops it with exit 0.
func TestManifestServesAndProbesPass(t *testing.T) {
	d := load(t)
	c, m := podOnDisk(t, d, true)
	s := serve(t, m, c.Args)
	if s.health == "" {
		t.Fatalf("tunneld printed no health address: %q", c.Args)
	}
	for name, probe := range map[string]*corev1.Probe{
		"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe,
	} {
		if probe == nil || probe.GRPC == nil {
			t.Fatalf("%s probe is not a gRPC probe", name)
		}
		timeout := time.Duration(max(probe.TimeoutSeconds, 1)) * time.Second
		service := ptr.Deref(probe.GRPC.Service, "")
		// kubelet tries again each period; readiness waits for the
		// declared tunnel's first try.
		deadline := time.Now().Add(30 * time.Second)
		for {
			ok, got := kubeletProbe(s.health, service, timeout)
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the %s probe (service %q) of %s: %s\ntunneld's log:\n%s", name, service, s.health, got, s.log())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if ok, got := kubeletProbe(s.api, "", 2*time.Second); ok {
		t.Errorf("a plaintext probe of the TLS API at %s passed: %s", s.api, got)
	}
	s.stop(t)
}

// podOnDisk lays the pod's volumes out under a temp dir (the ConfigMap's
// and the Secret's data, or with real a generated key, certificate and
// token in the Secret's place), runs the init containers' commands there,
// and returns tunneld's container with its mounts.
func podOnDisk(t *testing.T, d deployment, real bool) (corev1.Container, mounts) {
	t.Helper()
	root := t.TempDir()
	pod := d.statefulSet.Spec.Template.Spec
	volumes := map[string]string{}
	for _, v := range pod.Volumes {
		dir := filepath.Join(root, "volumes", v.Name)
		volumes[v.Name] = dir
		switch {
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != d.configMap.Name {
				t.Fatalf("volume %s names ConfigMap %s, not the rendered %s", v.Name, v.ConfigMap.Name, d.configMap.Name)
			}
			for k, data := range d.configMap.Data {
				writeFile(t, filepath.Join(dir, k), []byte(data), 0o444)
			}
		case v.Secret != nil:
			if v.Secret.SecretName != d.secret.Name {
				t.Fatalf("volume %s names Secret %s, not the rendered %s", v.Name, v.Secret.SecretName, d.secret.Name)
			}
			for k, data := range d.secret.Data {
				writeFile(t, filepath.Join(dir, k), data, 0o440)
			}
			if real {
				secretFiles(t, dir)
			}
		case v.EmptyDir != nil:
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("volume %s: a kind this test does not stand in for", v.Name)
		}
	}
	for _, c := range d.statefulSet.Spec.VolumeClaimTemplates {
		volumes[c.Name] = filepath.Join(root, "volumes", c.Name)
		if err := os.MkdirAll(volumes[c.Name], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mountsOf := func(c corev1.Container) mounts {
		m := mounts{}
		for _, vm := range c.VolumeMounts {
			dir, ok := volumes[vm.Name]
			if !ok {
				t.Fatalf("%s mounts %s, which is no volume", c.Name, vm.Name)
			}
			m[vm.MountPath] = dir
		}
		return m
	}
	for _, c := range pod.InitContainers {
		m := mountsOf(c)
		var argv []string
		for _, a := range append(slices.Clone(c.Command), c.Args...) {
			mapped, _ := m.remap(a)
			argv = append(argv, mapped)
		}
		if code, stdout, stderr := run(t, argv[0], argv[1:]...); code != 0 {
			t.Fatalf("init container %s: %q: exit %d\n%s%s", c.Name, argv, code, stdout, stderr)
		}
	}
	c := pod.Containers[0]
	return c, mountsOf(c)
}

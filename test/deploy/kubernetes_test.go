package deploy

// The Kubernetes manifests (config/kubernetes), checked without a cluster:
// every object decodes strictly into its API type, each overlay is rendered
// in-process by kustomize's own library (what `kubectl apply -k` applies)
// and its objects must agree with each other and with feedbackd, and the
// configuration they mount passes `feedbackd --check-config`.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/feedbackd/feedbackd/pkg/admin"
	"github.com/feedbackd/feedbackd/pkg/daemon"
)

const k8sDir = "../../config/kubernetes"

// overlays are the installs the README offers; each must run exactly one
// autoscaler.
var overlays = map[string]string{
	"production":     "keda",
	"production-hpa": "hpa",
}

// afterDrain bounds what feedbackd does on SIGTERM after the drain of
// shutdown.timeout: commit the settled offsets while leaving the group and
// stop the HTTP server (5 s at most in daemon.Run). The grace period must
// cover the preStop sleep, the drain and this.
const afterDrain = 15 * time.Second

// secretKeys are the configuration keys that hold secrets: never in the
// ConfigMap, always from the Secret.
var secretKeys = []string{
	"admin.token", "secrets.keys", "admin.jwt.hmac_secret",
	"kafka.sasl.username", "kafka.sasl.password", "redis.password", "delivery.proxy",
}

// scaledObject mirrors the fields of KEDA's keda.sh/v1alpha1 ScaledObject
// that the manifests use, so that a misspelt field fails the strict decode.
// KEDA's own Go types (github.com/kedacore/keda/v2/apis/keda/v1alpha1) would
// bring client-go's whole clientset and controller-runtime into go.mod for
// one test (README "Deploy on Kubernetes").
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval *int32 `json:"pollingInterval"`
		CooldownPeriod  *int32 `json:"cooldownPeriod"`
		Advanced        *struct {
			HorizontalPodAutoscalerConfig *struct {
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior"`
			} `json:"horizontalPodAutoscalerConfig"`
		} `json:"advanced"`
		Triggers []struct {
			Type              string            `json:"type"`
			Name              string            `json:"name"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

// triggerAuthentication mirrors KEDA's TriggerAuthentication likewise.
type triggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

// kinds maps apiVersion/kind to the type an object must decode into.
var kinds = map[string]func() any{
	"v1/Namespace":                            func() any { return new(corev1.Namespace) },
	"v1/ConfigMap":                            func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                               func() any { return new(corev1.Secret) },
	"v1/Service":                              func() any { return new(corev1.Service) },
	"apps/v1/Deployment":                      func() any { return new(appsv1.Deployment) },
	"policy/v1/PodDisruptionBudget":           func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return new(monitoringv1.ServiceMonitor) },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return new(monitoringv1.PrometheusRule) },
	"keda.sh/v1alpha1/ScaledObject":           func() any { return new(scaledObject) },
	"keda.sh/v1alpha1/TriggerAuthentication":  func() any { return new(triggerAuthentication) },
}

// decodeStrict decodes one YAML object into its API type the way the API
// server's strict field validation does: unknown and duplicate fields, and
// fields in the wrong case, are errors.
func decodeStrict(doc []byte) (any, error) {
	js, err := k8syaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	var tm metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		return nil, err
	}
	newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("%s/%s is not a kind the manifests may use", tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	strict, err := kjson.UnmarshalStrict(js, obj)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("%s: %v", tm.Kind, strict)
	}
	return obj, nil
}

// install is what one overlay renders to.
type install struct {
	objects    []any
	namespace  *corev1.Namespace
	deployment *appsv1.Deployment
	service    *corev1.Service
	pdb        *policyv1.PodDisruptionBudget
	monitor    *monitoringv1.ServiceMonitor
	rule       *monitoringv1.PrometheusRule
	configMap  *corev1.ConfigMap
	scaled     []*scaledObject
	auths      []*triggerAuthentication
	hpas       []*autoscalingv2.HorizontalPodAutoscaler
}

// render builds an overlay with kustomize's library (the code of `kubectl
// kustomize`) and decodes every object it produces strictly.
func render(t *testing.T, overlay string) *install {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(k8sDir, "overlays", overlay))
	if err != nil {
		t.Fatalf("kustomize build overlays/%s: %v", overlay, err)
	}
	in := &install{}
	one := func(dst any, obj any) {
		if reflect.ValueOf(dst).Elem().IsNil() {
			reflect.ValueOf(dst).Elem().Set(reflect.ValueOf(obj))
			return
		}
		t.Errorf("overlays/%s renders more than one %T", overlay, obj)
	}
	for _, r := range resMap.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Fatalf("overlays/%s: %s: %v", overlay, r.CurId(), err)
		}
		in.objects = append(in.objects, obj)
		switch o := obj.(type) {
		case *corev1.Namespace:
			one(&in.namespace, o)
		case *appsv1.Deployment:
			one(&in.deployment, o)
		case *corev1.Service:
			one(&in.service, o)
		case *policyv1.PodDisruptionBudget:
			one(&in.pdb, o)
		case *monitoringv1.ServiceMonitor:
			one(&in.monitor, o)
		case *monitoringv1.PrometheusRule:
			one(&in.rule, o)
		case *corev1.ConfigMap:
			one(&in.configMap, o)
		case *scaledObject:
			in.scaled = append(in.scaled, o)
		case *triggerAuthentication:
			in.auths = append(in.auths, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			in.hpas = append(in.hpas, o)
		default:
			t.Errorf("overlays/%s renders a %T nothing checks", overlay, o)
		}
	}
	for name, v := range map[string]any{"Namespace": in.namespace, "Deployment": in.deployment, "Service": in.service,
		"PodDisruptionBudget": in.pdb, "ServiceMonitor": in.monitor, "PrometheusRule": in.rule, "ConfigMap": in.configMap} {
		if reflect.ValueOf(v).IsNil() {
			t.Fatalf("overlays/%s renders no %s", overlay, name)
		}
	}
	return in
}

// Every YAML file under config/kubernetes (kustomizations and the mounted
// feedbackd.yaml aside, which kustomize and feedbackd check) decodes
// strictly, the example Secret included.
func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	var files int
	err := filepath.WalkDir(k8sDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		if base := filepath.Base(path); base == "kustomization.yaml" || base == "feedbackd.yaml" {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, doc := range bytes.Split(raw, []byte("\n---\n")) {
			if _, err := decodeStrict(doc); err != nil {
				t.Errorf("%s (document %d): %v", path, i+1, err)
			}
		}
		files++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 10 {
		t.Fatalf("only %d manifests found under %s", files, k8sDir)
	}
}

// The strict decode refuses what the API server would refuse: it is what
// the other tests rely on.
func TestDecodeStrictRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field":    "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selectr: {a: b}}\n",
		"wrong case":       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {Selector: {a: b}}\n",
		"duplicate field":  "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {type: ClusterIP, type: NodePort}\n",
		"unknown kind":     "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
		"KEDA misspelling": "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec: {maxReplicas: 3}\n",
		"CRD misspelling":  "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec: {endpoint: []}\n",
	} {
		if _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func TestKubernetesOverlays(t *testing.T) {
	bin := feedbackdBinary(t)
	for overlay, autoscaler := range overlays {
		t.Run(overlay, func(t *testing.T) {
			in := render(t, overlay)
			cfgFile := mountedConfig(t, in)
			cfg, _ := loadConfigFile(t, cfgFile)
			checkNamespace(t, in)
			pod := checkDeployment(t, in, cfg)
			checkSelectors(t, in, pod)
			checkAutoscaler(t, in, cfg, autoscaler)
			checkSecrets(t, in, cfgFile, bin)
			checkRules(t, in)
		})
	}
}

// mountedConfig returns the feedbackd.yaml the Deployment passes with
// --config, from the ConfigMap mounted there.
func mountedConfig(t *testing.T, in *install) []byte {
	t.Helper()
	c := container(t, in.deployment)
	df, err := os.ReadFile("../../config/docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	entry := regexp.MustCompile(`(?m)^ENTRYPOINT \["([^"]+)"`).FindSubmatch(df)
	if entry == nil || len(c.Command) != 1 || c.Command[0] != string(entry[1]) {
		t.Errorf("command %q is not the image's feedbackd (Dockerfile ENTRYPOINT)", c.Command)
	}
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("args %q pass no --config", c.Args)
	}
	path := c.Args[i+1]
	for _, m := range c.VolumeMounts {
		key, ok := strings.CutPrefix(path, m.MountPath+"/")
		if !ok {
			continue
		}
		v := volume(t, in.deployment, m.Name)
		if v.ConfigMap == nil || v.ConfigMap.Name != in.configMap.Name {
			t.Fatalf("--config %s is on volume %s, not the ConfigMap %s", path, m.Name, in.configMap.Name)
		}
		data, ok := in.configMap.Data[key]
		if !ok {
			t.Fatalf("ConfigMap %s has no key %s (--config %s)", in.configMap.Name, key, path)
		}
		return []byte(data)
	}
	t.Fatalf("--config %s is on no volume mount", path)
	return nil
}

func checkNamespace(t *testing.T, in *install) {
	t.Helper()
	if in.namespace.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s does not enforce the restricted Pod Security Standard", in.namespace.Name)
	}
	for _, obj := range in.objects {
		m := reflect.ValueOf(obj).Elem().FieldByName("ObjectMeta").Interface().(metav1.ObjectMeta)
		if _, isNS := obj.(*corev1.Namespace); !isNS && m.Namespace != in.namespace.Name {
			t.Errorf("%T %s is in namespace %q, not %q", obj, m.Name, m.Namespace, in.namespace.Name)
		}
	}
}

// checkDeployment checks the pod template against feedbackd: ports, probes
// on served paths, the grace period, the security context and the
// resources. It returns the pod labels.
func checkDeployment(t *testing.T, in *install, cfg daemon.Config) labels.Set {
	t.Helper()
	d := in.deployment
	if d.Spec.Replicas != nil {
		t.Error("the Deployment sets replicas: each apply would reset what the autoscaler chose")
	}
	pod := labels.Set(d.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(pod) {
		t.Errorf("the Deployment's selector %v does not select its pods %v (%v)", d.Spec.Selector, pod, err)
	}
	c := container(t, d)

	// The port feedbackd listens on (http.addr) is the container port "http".
	_, port, err := net.SplitHostPort(cfg.HTTP.Addr)
	if err != nil {
		t.Fatalf("http.addr %q: %v", cfg.HTTP.Addr, err)
	}
	var httpPort int32
	for _, p := range c.Ports {
		if p.Name == "http" {
			httpPort = p.ContainerPort
		}
	}
	if strconv.Itoa(int(httpPort)) != port {
		t.Errorf("container port http is %d, http.addr listens on %s", httpPort, port)
	}

	// Probes: on that port, on paths the admin handler serves (a path it
	// does not serve answers 404 and would fail the probe).
	h := admin.NewHandler(nil, nil, admin.Options{Gatherer: prometheus.NewRegistry()})
	probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
	wantPath := map[string]string{"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"}
	for name, p := range probes {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", name)
			continue
		}
		if p.HTTPGet.Path != wantPath[name] {
			t.Errorf("%s probe on %s, want %s", name, p.HTTPGet.Path, wantPath[name])
		}
		if p.HTTPGet.Port.String() != "http" && p.HTTPGet.Port.IntVal != httpPort {
			t.Errorf("%s probe on port %s, not the http port", name, p.HTTPGet.Port.String())
		}
		if code := get(h, p.HTTPGet.Path); code != http.StatusOK {
			t.Errorf("%s probe: GET %s answers %d", name, p.HTTPGet.Path, code)
		}
	}
	if code := get(h, "/no-such-probe"); code != http.StatusNotFound {
		t.Fatalf("an unserved path answers %d: the probe check proves nothing", code)
	}
	// /readyz answers 503 while a dependency is down: it is a readiness check.
	notReady := admin.NewHandler(nil, nil, admin.Options{Checks: []admin.Check{{Name: "kafka", Func: func(context.Context) error { return errors.New("down") }}}})
	if code := get(notReady, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Kafka down answers %d", code)
	}

	// Grace: the preStop sleep, the drain (shutdown.timeout) and what
	// follows it fit before SIGKILL.
	var preStop time.Duration
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Error("no preStop sleep")
	} else {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		if preStop <= 0 {
			t.Error("preStop sleeps 0 s")
		}
	}
	grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if need := preStop + cfg.Shutdown.Timeout + afterDrain; grace < need {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %v + shutdown.timeout %v + %v", grace, preStop, cfg.Shutdown.Timeout, afterDrain)
	}

	checkSecurityContext(t, d.Spec.Template.Spec, c)
	checkResources(t, c)
	return pod
}

func checkSecurityContext(t *testing.T, spec corev1.PodSpec, c corev1.Container) {
	t.Helper()
	psc, sc := spec.SecurityContext, c.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = psc.RunAsNonRoot
	}
	user := sc.RunAsUser
	if user == nil {
		user = psc.RunAsUser
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if nonRoot == nil || !*nonRoot {
		t.Error("runAsNonRoot is not true")
	}
	if user == nil || *user != 65532 {
		t.Errorf("runAsUser is %v, not 65532 (distroless nonroot)", user)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities %v: want drop [ALL], add none", sc.Capabilities)
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile %v is not RuntimeDefault", seccomp)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the service account token is mounted: feedbackd never calls the Kubernetes API")
	}
}

// checkResources holds the container's memory to README "Scaling out": the
// request at least what it says the defaults need, the limit above it.
func checkResources(t *testing.T, c corev1.Container) {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(\d+) MiB\s+per instance is enough for the defaults`).FindSubmatch(readme)
	if m == nil {
		t.Fatal(`README "Scaling out" no longer says how much memory an instance needs`)
	}
	need := resource.MustParse(string(m[1]) + "Mi")
	req, lim := c.Resources.Requests, c.Resources.Limits
	if r := req[corev1.ResourceMemory]; r.Cmp(need) < 0 {
		t.Errorf("memory request %s is below the %s README documents", r.String(), need.String())
	}
	if l := lim[corev1.ResourceMemory]; l.Cmp(need) <= 0 {
		t.Errorf("memory limit %s is not above the %s README documents", l.String(), need.String())
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		q, ok := req[r]
		l, lok := lim[r]
		if !ok || !lok || q.Cmp(l) > 0 {
			t.Errorf("%s: request %s, limit %s", r, q.String(), l.String())
		}
	}
}

// checkSelectors: the Service selects the pods and names the container
// port, the ServiceMonitor selects the Service and names its port, the PDB
// selects the pods.
func checkSelectors(t *testing.T, in *install, pod labels.Set) {
	t.Helper()
	svc := in.service
	if sel := labels.SelectorFromSet(svc.Spec.Selector); len(svc.Spec.Selector) == 0 || !sel.Matches(pod) {
		t.Errorf("the Service's selector %v does not select the pods %v", svc.Spec.Selector, pod)
	}
	c := container(t, in.deployment)
	var svcPorts []string
	for _, p := range svc.Spec.Ports {
		svcPorts = append(svcPorts, p.Name)
		found := false
		for _, cp := range c.Ports {
			found = found || (p.TargetPort.Type == intstr.String && p.TargetPort.StrVal == cp.Name) || (p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal == cp.ContainerPort)
		}
		if !found {
			t.Errorf("Service port %s targets %s, which the container does not expose", p.Name, p.TargetPort.String())
		}
	}
	pdb, err := metav1.LabelSelectorAsSelector(in.pdb.Spec.Selector)
	if err != nil || pdb.Empty() || !pdb.Matches(pod) {
		t.Errorf("the PodDisruptionBudget's selector %v does not select the pods (%v)", in.pdb.Spec.Selector, err)
	}

	sm := in.monitor
	smSel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil || smSel.Empty() || !smSel.Matches(labels.Set(svc.Labels)) {
		t.Errorf("the ServiceMonitor's selector %v does not select the Service's labels %v (%v)", sm.Spec.Selector, svc.Labels, err)
	}
	if len(sm.Spec.Endpoints) == 0 {
		t.Fatal("the ServiceMonitor scrapes nothing")
	}
	h := admin.NewHandler(nil, nil, admin.Options{Gatherer: prometheus.NewRegistry()})
	for _, e := range sm.Spec.Endpoints {
		if !slices.Contains(svcPorts, e.Port) {
			t.Errorf("the ServiceMonitor scrapes port %q; the Service's ports are %v", e.Port, svcPorts)
		}
		if e.Path != "/metrics" || get(h, e.Path) != http.StatusOK {
			t.Errorf("the ServiceMonitor scrapes %q, not feedbackd's /metrics", e.Path)
		}
	}
}

// checkAutoscaler: exactly the one autoscaler the overlay is for, on the
// Deployment, with no more replicas than the input topics' partitions; KEDA
// measures the lag of feedbackd's group on its input topics.
func checkAutoscaler(t *testing.T, in *install, cfg daemon.Config, want string) {
	t.Helper()
	if n := len(in.scaled) + len(in.hpas); n != 1 {
		t.Fatalf("%d autoscalers (%d ScaledObjects, %d HPAs) target the Deployment: want one", n, len(in.scaled), len(in.hpas))
	}
	target := func(apiVersion, kind, name string) {
		if apiVersion != "apps/v1" || kind != "Deployment" || name != in.deployment.Name {
			t.Errorf("the autoscaler targets %s %s %s, not the Deployment %s", apiVersion, kind, name, in.deployment.Name)
		}
	}
	var minR, maxR int32
	switch want {
	case "hpa":
		if len(in.hpas) != 1 {
			t.Fatal("no HPA")
		}
		h := in.hpas[0]
		target(h.Spec.ScaleTargetRef.APIVersion, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		minR, maxR = *h.Spec.MinReplicas, h.Spec.MaxReplicas
		if len(h.Spec.Metrics) == 0 || h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
			t.Error("the HPA does not scale on CPU")
		}
	case "keda":
		if len(in.scaled) != 1 {
			t.Fatal("no ScaledObject")
		}
		so := in.scaled[0]
		ref := so.Spec.ScaleTargetRef
		target(ref.APIVersion, ref.Kind, ref.Name)
		if so.Spec.MinReplicaCount == nil || so.Spec.MaxReplicaCount == nil {
			t.Fatal("the ScaledObject leaves minReplicaCount or maxReplicaCount to KEDA's defaults")
		}
		minR, maxR = *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount
		var topics []string
		for _, tr := range so.Spec.Triggers {
			md := tr.Metadata
			if tr.Type != "kafka" {
				t.Errorf("trigger %s is %s, not kafka", tr.Name, tr.Type)
			}
			if md["consumerGroup"] != cfg.Kafka.Group {
				t.Errorf("trigger %s measures group %q; feedbackd's is %q", tr.Name, md["consumerGroup"], cfg.Kafka.Group)
			}
			if md["bootstrapServers"] != strings.Join(cfg.Kafka.Brokers, ",") {
				t.Errorf("trigger %s asks %q; feedbackd's brokers are %v", tr.Name, md["bootstrapServers"], cfg.Kafka.Brokers)
			}
			if md["offsetResetPolicy"] != "earliest" {
				t.Errorf("trigger %s: offsetResetPolicy %q, feedbackd starts a new group at the earliest offset", tr.Name, md["offsetResetPolicy"])
			}
			if n, err := strconv.Atoi(md["lagThreshold"]); err != nil || n <= 0 {
				t.Errorf("trigger %s: lagThreshold %q", tr.Name, md["lagThreshold"])
			}
			topics = append(topics, md["topic"])
			if tr.AuthenticationRef == nil {
				t.Errorf("trigger %s has no authenticationRef", tr.Name)
				continue
			}
			i := slices.IndexFunc(in.auths, func(a *triggerAuthentication) bool { return a.Name == tr.AuthenticationRef.Name })
			if i < 0 {
				t.Errorf("trigger %s authenticates with %s, which is not rendered", tr.Name, tr.AuthenticationRef.Name)
			}
		}
		sort.Strings(topics)
		input := slices.Sorted(slices.Values(cfg.Kafka.Topics.Input))
		if !slices.Equal(topics, input) {
			t.Errorf("KEDA measures lag on %v; the input topics are %v", topics, input)
		}
		secret := exampleSecret(t)
		for _, a := range in.auths {
			params := map[string]bool{}
			for _, r := range a.Spec.SecretTargetRef {
				params[r.Parameter] = true
				if _, ok := secret.StringData[r.Key]; r.Name != secret.Name || !ok {
					t.Errorf("TriggerAuthentication %s reads %s/%s, which the example Secret does not hold", a.Name, r.Name, r.Key)
				}
			}
			for _, p := range []string{"sasl", "username", "password", "tls", "ca", "cert", "key"} {
				if !params[p] {
					t.Errorf("TriggerAuthentication %s gives KEDA no %s", a.Name, p)
				}
			}
		}
	}
	if maxR > cfg.Kafka.Partitions {
		t.Errorf("up to %d replicas, but kafka.partitions is %d: the extra ones would get no partition", maxR, cfg.Kafka.Partitions)
	}
	// One pod may be evicted (PDB) while another keeps consuming.
	if minR < 2 || minR > maxR {
		t.Errorf("replicas %d..%d: want at least 2 and min <= max", minR, maxR)
	}
	if u := in.pdb.Spec.MaxUnavailable; u == nil || u.IntValue() < 1 || int32(u.IntValue()) >= minR {
		t.Errorf("PDB maxUnavailable %v with at least %d replicas", u, minR)
	}
}

// checkSecrets: every secret key comes from the Secret (a secretKeyRef,
// never a literal value), none is set in the ConfigMap, and the mounted
// configuration with the Secret's entries passes feedbackd's own check.
func checkSecrets(t *testing.T, in *install, cfgFile []byte, bin string) {
	t.Helper()
	cfg, setInFile := loadConfigFile(t, cfgFile)
	secret := exampleSecret(t)
	c := container(t, in.deployment)
	fromSecret := map[string]string{} // configuration key -> Secret key
	env := map[string]string{}        // what the pod gets, the Secret as in the example
	names := envNames()
	for _, e := range c.Env {
		key, isConfig := names[e.Name]
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := secret.StringData[ref.Key]
			if ref.Name != secret.Name || !ok {
				t.Errorf("%s reads %s/%s, which the example Secret does not hold", e.Name, ref.Name, ref.Key)
			}
			if !isConfig {
				t.Errorf("%s names no configuration key", e.Name)
			}
			fromSecret[key] = ref.Key
			env[e.Name] = v
		case e.Name == "GOMEMLIMIT":
			// feedbackd sets the soft memory limit under the container's
			// itself; one at the limit would leave nothing for what Go does
			// not count.
			t.Errorf("GOMEMLIMIT is set: feedbackd derives it from the container's memory limit")
		case e.ValueFrom != nil:
			t.Errorf("%s comes from neither the Secret nor a literal", e.Name)
		default:
			if slices.Contains(secretKeys, key) {
				t.Errorf("%s is a secret written in the Deployment", e.Name)
			}
			env[e.Name] = e.Value
		}
	}
	for _, k := range secretKeys {
		if fromSecret[k] == "" {
			t.Errorf("%s does not come from the Secret", k)
		}
		if setInFile[k] {
			t.Errorf("the ConfigMap sets %s: secrets belong in the Secret", k)
		}
	}
	// Files the configuration names (TLS keys, password files) must come
	// from a Secret volume.
	values := leaves("", reflect.ValueOf(cfg))
	for key := range setInFile {
		if !strings.HasSuffix(key, "_file") {
			continue
		}
		path := values[key].String()
		ok := false
		for _, m := range c.VolumeMounts {
			ok = ok || strings.HasPrefix(path, m.MountPath+"/") && volume(t, in.deployment, m.Name).Secret != nil
		}
		if !ok {
			t.Errorf("the ConfigMap's %s is %s, which no Secret volume provides", key, path)
		}
	}

	// The example holds placeholders for the two required entries: the
	// check gets real-looking values, the rest as in the example.
	env["FEEDBACKD_ADMIN_TOKEN"] = hex.EncodeToString(randomBytes(24))
	env["FEEDBACKD_SECRETS_KEYS"] = base64.StdEncoding.EncodeToString(randomBytes(32))
	path := filepath.Join(t.TempDir(), "feedbackd.yaml")
	if err := os.WriteFile(path, cfgFile, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := checkConfig(bin, path, env)
	if err != nil || !strings.Contains(out, "configuration is valid") {
		t.Errorf("feedbackd --check-config on the mounted configuration: %v\n%s", err, out)
	}
	// And it would say so if it were not.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, append(slices.Clone(cfgFile), "\nshutdown:\n  timeot: 30s\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := checkConfig(bin, bad, env); err == nil {
		t.Errorf("feedbackd --check-config accepted a misspelt key:\n%s", out)
	}
}

// The PrometheusRule holds exactly the groups of config/prometheus/alerts.yml.
func checkRules(t *testing.T, in *install) {
	t.Helper()
	raw, err := os.ReadFile("../../config/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := k8syaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	var want monitoringv1.PrometheusRuleSpec
	if strict, err := kjson.UnmarshalStrict(js, &want); err != nil || len(strict) > 0 {
		t.Fatalf("alerts.yml does not decode as a PrometheusRule spec: %v %v", err, strict)
	}
	if len(want.Groups) == 0 || len(want.Groups[0].Rules) == 0 {
		t.Fatal("alerts.yml holds no rules")
	}
	if !reflect.DeepEqual(in.rule.Spec, want) {
		t.Error("the PrometheusRule's groups differ from config/prometheus/alerts.yml: copy them again")
		for i := range min(len(want.Groups), len(in.rule.Spec.Groups)) {
			for j := range min(len(want.Groups[i].Rules), len(in.rule.Spec.Groups[i].Rules)) {
				if w, g := want.Groups[i].Rules[j], in.rule.Spec.Groups[i].Rules[j]; !reflect.DeepEqual(w, g) {
					t.Errorf("group %s rule %d: %s%s differs", want.Groups[i].Name, j, w.Alert, w.Record)
				}
			}
		}
	}
	// The ServiceMonitor's series get job="<Service name>": the alerts
	// that match a job must match that one.
	for _, m := range regexp.MustCompile(`job="([^"]*)"`).FindAllSubmatch(raw, -1) {
		if string(m[1]) != in.service.Name {
			t.Errorf(`alerts.yml matches job=%q; scraped through the ServiceMonitor the job is %q`, m[1], in.service.Name)
		}
	}
}

// The compose file and the Kubernetes manifests describe the same
// configuration: the keys each sets (the Kubernetes ConfigMap counts only
// where it departs from the defaults; a Deployment variable counts even
// when its Secret entry is optional) agree, but for the listed exceptions.
func TestComposeAndKubernetesSetTheSameKeys(t *testing.T) {
	onlyCompose := map[string]string{
		"delivery.allow_http":             "the demo receiver runs on the compose network over plain HTTP",
		"delivery.allow_private_networks": "the demo receiver has a private address on the compose network",
	}
	onlyKubernetes := map[string]string{
		"kafka.sasl.username":   "compose's single-node Kafka has no authentication",
		"kafka.sasl.password":   "compose's single-node Kafka has no authentication",
		"redis.password":        "compose's Redis has no password",
		"admin.jwt.hmac_secret": "the compose demo signs in with the admin token only",
		"delivery.proxy":        "the compose demo delivers to its own receiver, with no egress proxy",
	}

	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	names := envNames()
	composeKeys := map[string]bool{}
	for name := range compose.Services["feedbackd"].Environment {
		key, ok := names[name]
		if !ok {
			t.Errorf("docker-compose.yml sets %s, which names no configuration key", name)
		}
		composeKeys[key] = true
	}

	for overlay := range overlays {
		in := render(t, overlay)
		_, k8sKeys := loadConfigFile(t, mountedConfig(t, in))
		for _, e := range container(t, in.deployment).Env {
			if key, ok := names[e.Name]; ok {
				k8sKeys[key] = true
			}
		}
		for key := range composeKeys {
			if !k8sKeys[key] && onlyCompose[key] == "" {
				t.Errorf("%s: docker-compose.yml sets %s, the Kubernetes manifests do not", overlay, key)
			}
		}
		for key := range k8sKeys {
			if !composeKeys[key] && onlyKubernetes[key] == "" {
				t.Errorf("%s: the Kubernetes manifests set %s, docker-compose.yml does not", overlay, key)
			}
		}
		for key := range onlyCompose {
			if !composeKeys[key] || k8sKeys[key] {
				t.Errorf("exception %s is stale: remove it", key)
			}
		}
		for key := range onlyKubernetes {
			if composeKeys[key] || !k8sKeys[key] {
				t.Errorf("exception %s is stale: remove it", key)
			}
		}
	}
}

// loadConfigFile decodes a feedbackd.yaml over the defaults with viper and
// the same exact decoding feedbackd uses (unknown keys refused), and
// returns it with the keys whose value departs from the default. The
// binary's own --check-config judges validity (checkSecrets).
func loadConfigFile(t *testing.T, file []byte) (daemon.Config, map[string]bool) {
	t.Helper()
	defaults := leaves("", reflect.ValueOf(daemon.Defaults()))
	v := viper.New()
	for k, val := range defaults {
		v.SetDefault(k, val.Interface())
	}
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(file)); err != nil {
		t.Fatal(err)
	}
	var cfg daemon.Config
	if err := v.UnmarshalExact(&cfg); err != nil {
		t.Fatalf("mounted feedbackd.yaml: %v", err)
	}
	set := map[string]bool{}
	for k, val := range leaves("", reflect.ValueOf(cfg)) {
		if !reflect.DeepEqual(val.Interface(), defaults[k].Interface()) {
			set[k] = true
		}
	}
	return cfg, set
}

// leaves are the configuration's keys and values, as cmd/feedbackd's
// setDefaults walks them.
func leaves(prefix string, val reflect.Value) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	for i := range val.NumField() {
		key := prefix + val.Type().Field(i).Tag.Get("mapstructure")
		if f := val.Field(i); f.Kind() == reflect.Struct {
			for k, v := range leaves(key+".", f) {
				out[k] = v
			}
		} else {
			out[key] = f
		}
	}
	return out
}

// envNames maps each FEEDBACKD_ variable to its configuration key.
func envNames() map[string]string {
	out := map[string]string{}
	for k := range leaves("", reflect.ValueOf(daemon.Defaults())) {
		out["FEEDBACKD_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))] = k
	}
	return out
}

func exampleSecret(t *testing.T) *corev1.Secret {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(k8sDir, "secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := decodeStrict(raw)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := obj.(*corev1.Secret)
	if !ok {
		t.Fatalf("secret.example.yaml holds a %T", obj)
	}
	return s
}

func container(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "feedbackd" {
		t.Fatalf("want one container, feedbackd: %d", len(cs))
	}
	return cs[0]
}

func volume(t *testing.T, d *appsv1.Deployment, name string) corev1.Volume {
	t.Helper()
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %s", name)
	return corev1.Volume{}
}

func get(h http.Handler, path string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code
}

// feedbackdBinary builds cmd/feedbackd (without -race: it only checks a
// configuration).
func feedbackdBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "feedbackd")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/feedbackd").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/feedbackd: %v\n%s", err, out)
	}
	return bin
}

// checkConfig runs feedbackd --check-config on file with exactly env as
// its FEEDBACKD_ variables.
func checkConfig(bin, file string, env map[string]string) (string, error) {
	cmd := exec.Command(bin, "--config", file, "--check-config")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FEEDBACKD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

package resource

import (
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
)

// API groups of the supported kinds.
const (
	GroupNetworking = "networking.istio.io"
	GroupSecurity   = "security.istio.io"
	GroupCanton     = "canton.dev"
)

// Kind describes one resource kind.
type Kind struct {
	// Name is the canonical kind name as written in manifests, e.g. "VirtualService".
	Name string
	// Plural is the lower-case plural, e.g. "virtualservices".
	Plural string
	// Short holds kubectl-style short names, e.g. ["vs"]. May be empty.
	Short []string
	// APIGroup is the API group, e.g. "networking.istio.io" or "canton.dev".
	APIGroup string
	// Versions lists the accepted API versions, preferred (used by Manifest) first.
	Versions []string
	// Namespaced is false for kinds that always live in the mesh's root namespace (Anchor).
	Namespaced bool
	// Native is true for Canton-native kinds (specs are Go structs, not protobuf messages).
	Native bool

	newProto  func() proto.Message // Istio kinds
	newNative func() nativeSpec    // native kinds
}

// APIVersion returns the preferred apiVersion string, e.g. "networking.istio.io/v1".
func (k Kind) APIVersion() string { return k.APIGroup + "/" + k.Versions[0] }

// acceptsAPIVersion reports whether apiVersion (group/version) is valid for the kind.
func (k Kind) acceptsAPIVersion(apiVersion string) bool {
	group, version, ok := strings.Cut(apiVersion, "/")
	if !ok || group != k.APIGroup {
		return false
	}
	for _, v := range k.Versions {
		if v == version {
			return true
		}
	}
	return false
}

var (
	networkingVersions = []string{"v1", "v1beta1", "v1alpha3"}
	securityVersions   = []string{"v1", "v1beta1"}
	cantonVersions     = []string{"v1"}
)

// kinds is the table of every supported kind, in a fixed order (Istio networking, Istio
// security, Canton native).
var kinds = []Kind{
	{Name: "VirtualService", Plural: "virtualservices", Short: []string{"vs"}, APIGroup: GroupNetworking, Versions: networkingVersions, Namespaced: true,
		newProto: func() proto.Message { return &networking.VirtualService{} }},
	{Name: "DestinationRule", Plural: "destinationrules", Short: []string{"dr"}, APIGroup: GroupNetworking, Versions: networkingVersions, Namespaced: true,
		newProto: func() proto.Message { return &networking.DestinationRule{} }},
	{Name: "ServiceEntry", Plural: "serviceentries", Short: []string{"se"}, APIGroup: GroupNetworking, Versions: networkingVersions, Namespaced: true,
		newProto: func() proto.Message { return &networking.ServiceEntry{} }},
	{Name: "WorkloadEntry", Plural: "workloadentries", Short: []string{"we"}, APIGroup: GroupNetworking, Versions: networkingVersions, Namespaced: true,
		newProto: func() proto.Message { return &networking.WorkloadEntry{} }},
	{Name: "Gateway", Plural: "gateways", Short: []string{"gw"}, APIGroup: GroupNetworking, Versions: networkingVersions, Namespaced: true,
		newProto: func() proto.Message { return &networking.Gateway{} }},
	{Name: "Sidecar", Plural: "sidecars", APIGroup: GroupNetworking, Versions: networkingVersions, Namespaced: true,
		newProto: func() proto.Message { return &networking.Sidecar{} }},
	{Name: "PeerAuthentication", Plural: "peerauthentications", Short: []string{"pa"}, APIGroup: GroupSecurity, Versions: securityVersions, Namespaced: true,
		newProto: func() proto.Message { return &security.PeerAuthentication{} }},
	{Name: "RequestAuthentication", Plural: "requestauthentications", Short: []string{"ra"}, APIGroup: GroupSecurity, Versions: securityVersions, Namespaced: true,
		newProto: func() proto.Message { return &security.RequestAuthentication{} }},
	{Name: "AuthorizationPolicy", Plural: "authorizationpolicies", Short: []string{"ap"}, APIGroup: GroupSecurity, Versions: securityVersions, Namespaced: true,
		newProto: func() proto.Message { return &security.AuthorizationPolicy{} }},

	{Name: "Service", Plural: "services", Short: []string{"svc"}, APIGroup: GroupCanton, Versions: cantonVersions, Namespaced: true, Native: true,
		newNative: func() nativeSpec { return &ServiceSpec{} }},
	{Name: "Workload", Plural: "workloads", Short: []string{"wl"}, APIGroup: GroupCanton, Versions: cantonVersions, Namespaced: true, Native: true,
		newNative: func() nativeSpec { return &WorkloadSpec{} }},
	{Name: "Alias", Plural: "aliases", APIGroup: GroupCanton, Versions: cantonVersions, Namespaced: true, Native: true,
		newNative: func() nativeSpec { return &AliasSpec{} }},
	{Name: "Delegation", Plural: "delegations", Short: []string{"dg"}, APIGroup: GroupCanton, Versions: cantonVersions, Namespaced: true, Native: true,
		newNative: func() nativeSpec { return &DelegationSpec{} }},
	{Name: "Anchor", Plural: "anchors", APIGroup: GroupCanton, Versions: cantonVersions, Namespaced: false, Native: true,
		newNative: func() nativeSpec { return &AnchorSpec{} }},
	{Name: "CertificateAuthority", Plural: "certificateauthorities", Short: []string{"ca"}, APIGroup: GroupCanton, Versions: cantonVersions, Namespaced: true, Native: true,
		newNative: func() nativeSpec { return &CertificateAuthoritySpec{} }},
	{Name: "Export", Plural: "exports", APIGroup: GroupCanton, Versions: cantonVersions, Namespaced: true, Native: true,
		newNative: func() nativeSpec { return &ExportSpec{} }},
	{Name: "ExtensionProvider", Plural: "extensionproviders", APIGroup: GroupCanton, Versions: cantonVersions, Namespaced: false, Native: true,
		newNative: func() nativeSpec { return &ExtensionProviderSpec{} }},
}

// lookupTable maps every lower-case spelling (singular, plural, short) to its index in kinds.
var lookupTable = func() map[string]int {
	m := make(map[string]int)
	add := func(s string, i int) {
		if j, dup := m[s]; dup && j != i {
			panic("resource: kind name " + s + " is ambiguous")
		}
		m[s] = i
	}
	for i, k := range kinds {
		add(strings.ToLower(k.Name), i)
		add(k.Plural, i)
		for _, s := range k.Short {
			add(s, i)
		}
	}
	return m
}()

// Lookup finds a kind by its name, case-insensitively: singular ("VirtualService",
// "virtualservice"), plural ("virtualservices") or short name ("vs").
func Lookup(s string) (Kind, bool) {
	i, ok := lookupTable[strings.ToLower(strings.TrimSpace(s))]
	if !ok {
		return Kind{}, false
	}
	return kinds[i].clone(), true
}

// clone returns a copy that shares no slices with the kind table.
func (k Kind) clone() Kind {
	k.Short = append([]string(nil), k.Short...)
	k.Versions = append([]string(nil), k.Versions...)
	return k
}

// Kinds returns every supported kind, sorted by Name.
func Kinds() []Kind {
	out := make([]Kind, len(kinds))
	for i, k := range kinds {
		out[i] = k.clone()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

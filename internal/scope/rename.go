package scope

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	"canton.dev/canton/internal/resource"
)

// renameAliasActions are the actions of the Alias a rename leaves behind: callers may still resolve
// and invoke the old name; administering the Service goes through its new name.
var renameAliasActions = []string{"resolve", "invoke"}

// prepareRename moves a Service to a new name in the same namespace, atomically: the Service
// keeps its UID and Created (Version = index), an Alias with the old name targets the UID, and
// every Workload of the namespace whose spec.service is the old name now names the new one.
func (s *State) prepareRename(index uint64, m Mutation) (*outcome, *Error) {
	kind := "Service"
	if m.Kind != "" {
		k, ok := resource.Lookup(m.Kind)
		if !ok {
			return nil, reject(CodeInvalid, "kind: %q is not a supported kind", m.Kind)
		}
		if k.Name != "Service" {
			return nil, reject(CodeInvalid, "kind: only a Service can be renamed, not a %s", k.Name)
		}
	}
	if m.Namespace == "" || m.Name == "" || m.NewName == "" {
		return nil, reject(CodeInvalid, "namespace, name and newName: required")
	}
	if m.NewName == m.Name {
		return nil, reject(CodeInvalid, "newName: %q is the current name", m.NewName)
	}
	if why, ok := s.zoneCheck(m.Namespace, s.cuts); !ok {
		return nil, reject(CodeOutOfZone, "%s", why)
	}
	old, exists := s.objects[objKey{kind, m.Namespace, m.Name}]
	if !exists {
		return nil, reject(CodeNotFound, "Service %s/%s does not exist", m.Namespace, m.Name)
	}
	if m.IfVersion != nil {
		if *m.IfVersion == 0 {
			return nil, reject(CodeInvalid, "ifVersion: 0 (must not exist) makes no sense for a rename")
		}
		if old.Version != *m.IfVersion {
			return nil, reject(CodeConflict, "Service %s/%s: expected version %d, found %d", m.Namespace, m.Name, *m.IfVersion, old.Version)
		}
	}
	if o, taken := s.objects[objKey{kind, m.Namespace, m.NewName}]; taken {
		return nil, reject(CodeExists, "Service %s/%s already exists (uid %s)", m.Namespace, m.NewName, o.UID)
	}
	// Names of one namespace resolve to a Service or an Alias: neither name may stay ambiguous.
	if o, taken := s.objects[objKey{"Alias", m.Namespace, m.NewName}]; taken {
		return nil, reject(CodeConflict, "Alias %s/%s already exists (uid %s); delete it before renaming onto its name", m.Namespace, m.NewName, o.UID)
	}
	if o, taken := s.objects[objKey{"Alias", m.Namespace, m.Name}]; taken {
		return nil, reject(CodeConflict, "Alias %s/%s already exists (uid %s); the rename needs its name for the alias", m.Namespace, m.Name, o.UID)
	}

	moved := cloneObject(old)
	moved.Name = m.NewName
	moved.UID, moved.Version, moved.Created = "", 0, 0
	norm, err := resource.Normalize(moved)
	if err != nil {
		return nil, reject(CodeInvalid, "newName: Service %s/%s: %v", m.Namespace, m.NewName, err)
	}
	norm.UID, norm.Created, norm.Version, norm.VIPs = old.UID, old.Created, index, old.VIPs
	if len(norm.VIPs) == 0 && m.Rules >= RulesVIPs {
		norm.VIPs = s.allocateVIPs(norm, nil)
	}

	spec, jerr := json.Marshal(resource.AliasSpec{Target: old.UID, Actions: renameAliasActions})
	if jerr != nil {
		return nil, reject(CodeInvalid, "alias spec: %v", jerr)
	}
	alias, err := resource.Normalize(resource.Object{Kind: "Alias", Namespace: m.Namespace, Name: m.Name, Spec: spec})
	if err != nil {
		return nil, reject(CodeInvalid, "alias %s/%s: %v", m.Namespace, m.Name, err)
	}
	alias.UID, alias.Created, alias.Version = s.uid(index, 0), index, index

	out := &outcome{}
	out.changes = append(out.changes, change{del: true, obj: old}, change{obj: norm}, change{obj: alias})
	out.result.Objects = append(out.result.Objects, cloneObject(norm), cloneObject(alias))

	var names []string
	for k := range s.objects {
		if k.kind == "Workload" && k.ns == m.Namespace {
			names = append(names, k.name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		w := s.objects[objKey{"Workload", m.Namespace, name}]
		t, err := resource.Typed(w)
		if err != nil || t.(*resource.WorkloadSpec).Service != m.Name {
			continue
		}
		nw, rerr := renameWorkload(w, m.NewName)
		if rerr != nil {
			return nil, reject(CodeInvalid, "Workload %s/%s: %v", m.Namespace, name, rerr)
		}
		nw.UID, nw.Created, nw.Version = w.UID, w.Created, index
		out.changes = append(out.changes, change{obj: nw})
		out.result.Objects = append(out.result.Objects, cloneObject(nw))
	}
	rec := m
	rec.Kind = kind
	out.recorded = rec
	return out, nil
}

// renameWorkload returns w, normalised, with spec.service set to service and every other
// spec field kept as it was.
func renameWorkload(w resource.Object, service string) (resource.Object, error) {
	dec := json.NewDecoder(bytes.NewReader(w.Spec))
	dec.UseNumber()
	var spec map[string]any
	if err := dec.Decode(&spec); err != nil {
		return resource.Object{}, fmt.Errorf("spec: %w", err)
	}
	spec["service"] = service
	b, err := json.Marshal(spec)
	if err != nil {
		return resource.Object{}, fmt.Errorf("spec: %w", err)
	}
	n := cloneObject(w)
	n.Spec = b
	n.UID, n.Version, n.Created = "", 0, 0
	return resource.Normalize(n)
}

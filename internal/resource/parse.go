package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// MaxDocuments bounds the number of documents Parse accepts in one stream.
const MaxDocuments = 10000

// ParseError is an error in one document of a stream parsed by Parse.
type ParseError struct {
	File     string
	Document int    // 1-based
	Kind     string // "" when not known
	Name     string // "" when not known
	Err      error  // usually a *FieldError
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	b.WriteString(": document ")
	b.WriteString(strconv.Itoa(e.Document))
	switch {
	case e.Kind != "" && e.Name != "":
		b.WriteString(" (" + e.Kind + " " + e.Name + ")")
	case e.Kind != "":
		b.WriteString(" (" + e.Kind + ")")
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// Parse decodes one YAML or JSON stream of manifests (documents separated by "---" lines)
// read from the file named file (used in messages only).
//
// metadata.namespace is mapped with AbsoluteNamespace(ns, meshDomain): "bookinfo" becomes
// "bookinfo.demo.mesh", an absolute namespace (equal to or ending in meshDomain) is kept.
// An empty metadata.namespace takes defaultNS (mapped the same way); if that is empty too
// the document is rejected. Anchor objects always live in the mesh's root namespace
// (meshDomain).
//
// Parsing is strict: unknown top-level, metadata or spec fields, duplicate keys and invalid
// values are errors, and the whole stream is rejected on the first error (a *ParseError).
// Empty documents are skipped (but counted in document numbers). Every returned object has
// passed Validate and carries its canonical spec. metadata.uid and metadata.resourceVersion,
// as written by Manifest, are read into UID and Version.
func Parse(file string, data []byte, meshDomain, defaultNS string) ([]Object, error) {
	docs := splitDocuments(data)
	if len(docs) > MaxDocuments {
		return nil, fmt.Errorf("%s: %d documents, more than the limit of %d", file, len(docs), MaxDocuments)
	}
	var out []Object
	for i, doc := range docs {
		o, empty, perr := parseDocument(doc, meshDomain, defaultNS)
		if perr != nil {
			perr.File, perr.Document = file, i+1
			return nil, perr
		}
		if !empty {
			out = append(out, o)
		}
	}
	return out, nil
}

// splitDocuments splits a YAML stream at "---" lines (a line starting with "---" followed by
// nothing or whitespace) and "..." end markers. Text after "--- " on the separator line
// belongs to the next document.
func splitDocuments(data []byte) [][]byte {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var docs [][]byte
	var cur []byte
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		trimmed := bytes.TrimRight(line, " \t\r\n")
		switch {
		case bytes.Equal(trimmed, []byte("---")) || bytes.HasPrefix(line, []byte("--- ")) || bytes.HasPrefix(line, []byte("---\t")):
			docs = append(docs, cur)
			cur = append([]byte(nil), bytes.TrimLeft(line[3:], " \t")...)
		case bytes.Equal(trimmed, []byte("...")):
			docs = append(docs, cur)
			cur = nil
		default:
			cur = append(cur, line...)
		}
	}
	docs = append(docs, cur)
	// A stream starting with "---" has no document before it.
	if len(docs) > 1 && len(bytes.TrimSpace(docs[0])) == 0 {
		docs = docs[1:]
	}
	return docs
}

// parseDocument decodes one document. empty reports a document with no content.
func parseDocument(doc []byte, meshDomain, defaultNS string) (o Object, empty bool, perr *ParseError) {
	fail := func(kind, name string, err error) (Object, bool, *ParseError) {
		return Object{}, false, &ParseError{Kind: kind, Name: name, Err: err}
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return fail("", "", &FieldError{Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")})
	}
	v, err := decodeJSON("", js)
	if err != nil {
		return fail("", "", err)
	}
	if v == nil {
		return Object{}, true, nil
	}
	top, ok := v.(map[string]any)
	if !ok {
		return fail("", "", errorf("", "a document must be an object with apiVersion, kind, metadata and spec, not %s", jsonType(v)))
	}
	// Kind and name first, so every later error can name them.
	kindName, _ := top["kind"].(string)
	meta, _ := top["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	k, known := Lookup(kindName)
	if known {
		kindName = k.Name
	}
	for _, f := range sortedKeys(top) {
		switch f {
		case "apiVersion", "kind", "metadata", "spec":
		case "status":
			// What the scope set (a Service's VIPs), as `canton get -o yaml` prints it: ignored,
			// like metadata.uid, so that output can be applied again.
		default:
			return fail(kindName, name, errorf(f, "unknown field %q (allowed: apiVersion, kind, metadata, spec, status)", f))
		}
	}
	switch kv := top["kind"].(type) {
	case nil:
		return fail("", name, errorf("kind", "required"))
	case string:
		if !known {
			return fail(kv, name, errorf("kind", "unknown kind %q%s", kv, kindHint(kv)))
		}
		if kv != k.Name {
			return fail(k.Name, name, errorf("kind", "%q must be written %q", kv, k.Name))
		}
	default:
		return fail("", name, errorf("kind", "must be a string, not %s", jsonType(kv)))
	}
	apiVersion, ok := top["apiVersion"].(string)
	if !ok {
		return fail(k.Name, name, errorf("apiVersion", "required (a string such as %q)", k.APIVersion()))
	}
	if !k.acceptsAPIVersion(apiVersion) {
		versions := make([]string, len(k.Versions))
		for i, ver := range k.Versions {
			versions[i] = k.APIGroup + "/" + ver
		}
		return fail(k.Name, name, errorf("apiVersion", "%q is not valid for %s (use %s)", apiVersion, k.Name, strings.Join(versions, ", ")))
	}
	if top["metadata"] == nil {
		return fail(k.Name, name, errorf("metadata", "required (with at least a name)"))
	}
	if meta == nil {
		return fail(k.Name, name, errorf("metadata", "must be an object, not %s", jsonType(top["metadata"])))
	}
	o = Object{Kind: k.Name}
	for _, f := range sortedKeys(meta) {
		p := field("metadata", f)
		val := meta[f]
		switch f {
		case "name":
			s, ok := val.(string)
			if !ok {
				return fail(k.Name, "", errorf(p, "must be a string, not %s", jsonType(val)))
			}
			o.Name = s
		case "namespace":
			s, ok := val.(string)
			if !ok && val != nil {
				return fail(k.Name, name, errorf(p, "must be a string, not %s", jsonType(val)))
			}
			o.Namespace = s
		case "labels", "annotations":
			m, err := stringMap(p, val)
			if err != nil {
				return fail(k.Name, name, err)
			}
			if f == "labels" {
				o.Labels = m
			} else {
				o.Annotations = m
			}
		case "uid":
			s, ok := val.(string)
			if !ok && val != nil {
				return fail(k.Name, name, errorf(p, "must be a string, not %s", jsonType(val)))
			}
			o.UID = s
		case "resourceVersion":
			var text string
			switch t := val.(type) {
			case string:
				text = t
			case json.Number:
				text = string(t)
			case nil:
			default:
				return fail(k.Name, name, errorf(p, "must be a string, not %s", jsonType(val)))
			}
			if text != "" {
				n, err := strconv.ParseUint(text, 10, 64)
				if err != nil {
					return fail(k.Name, name, errorf(p, "%q must be a decimal number", text))
				}
				o.Version = n
			}
		default:
			return fail(k.Name, name, errorf(p, "unknown field %q (allowed: name, namespace, labels, annotations, resourceVersion, uid)", f))
		}
	}
	if k.Namespaced {
		ns := o.Namespace
		if ns == "" {
			ns = defaultNS
		}
		if ns == "" {
			return fail(k.Name, name, errorf("metadata.namespace", "required (no default namespace given)"))
		}
		o.Namespace = AbsoluteNamespace(ns, meshDomain)
	} else {
		if meshDomain == "" {
			return fail(k.Name, name, errorf("metadata.namespace", "%s objects live in the mesh root namespace, but no mesh domain is known", k.Name))
		}
		if o.Namespace != "" && AbsoluteNamespace(o.Namespace, meshDomain) != meshDomain {
			return fail(k.Name, name, errorf("metadata.namespace", "%s objects live in the mesh root namespace %q; leave namespace empty", k.Name, meshDomain))
		}
		o.Namespace = meshDomain
	}
	if sv, ok := top["spec"]; ok && sv != nil {
		b, err := encodeJSON(sv)
		if err != nil {
			return fail(k.Name, name, err)
		}
		o.Spec = b
	}
	n, err := Normalize(o)
	if err != nil {
		return fail(k.Name, name, err)
	}
	n.UID, n.Version = o.UID, o.Version
	return n, false, nil
}

// stringMap converts a generic object whose values are all strings.
func stringMap(path string, v any) (map[string]string, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errorf(path, "must be an object, not %s", jsonType(v))
	}
	out := make(map[string]string, len(m))
	for _, k := range sortedKeys(m) {
		s, ok := m[k].(string)
		if !ok {
			return nil, errorf(key(path, k), "must be a string, not %s (quote it in YAML)", jsonType(m[k]))
		}
		out[k] = s
	}
	return out, nil
}

// kindHint suggests the supported kinds when s is close to none of them.
func kindHint(s string) string {
	names := make([]string, 0, len(kinds))
	for _, k := range kinds {
		names = append(names, k.Name)
	}
	return " (supported: " + strings.Join(names, ", ") + ")"
}

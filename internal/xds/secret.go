package xds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// generateRootSecret builds "ROOTCA" from the scope's trust bundle, when the input carries one.
func generateRootSecret(g *gen, out *Resources) error {
	if len(g.in.TrustBundle) > 0 {
		out.Secrets[RootSecretName] = &tlsv3.Secret{Name: RootSecretName, Type: &tlsv3.Secret_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inlineBytes(g.in.TrustBundle)}}}
	}
	return nil
}

// generateNodeSecret builds "default" from the node's SVID, when the node carries it.
func generateNodeSecret(g *gen, out *Resources) error {
	if len(g.node.CertificateChain) > 0 && len(g.node.PrivateKey) > 0 {
		out.Secrets[CertSecretName] = &tlsv3.Secret{Name: CertSecretName, Type: &tlsv3.Secret_TlsCertificate{
			TlsCertificate: &tlsv3.TlsCertificate{CertificateChain: inlineBytes(g.node.CertificateChain), PrivateKey: inlineBytes(g.node.PrivateKey)}}}
	}
	return nil
}

func inlineBytes(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: append([]byte(nil), b...)}}
}

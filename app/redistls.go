package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// redisTLS is the TLS configuration of the connections to Redis (and to
// every node of a cluster): nil without FLASHSALE_REDIS_TLS; with it, the
// server's certificate is checked against FLASHSALE_REDIS_TLS_CA_FILE, or
// the system's CAs when that is unset. go-redis takes the server name from
// each address it dials.
func redisTLS(cfg Config) (*tls.Config, error) {
	if !cfg.RedisTLS {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.RedisTLSCAFile == "" {
		return c, nil
	}
	pem, err := os.ReadFile(cfg.RedisTLSCAFile)
	if err != nil {
		return nil, fmt.Errorf("FLASHSALE_REDIS_TLS_CA_FILE: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("FLASHSALE_REDIS_TLS_CA_FILE: " + cfg.RedisTLSCAFile + " holds no PEM certificate")
	}
	c.RootCAs = pool
	return c, nil
}

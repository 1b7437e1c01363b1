package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestComposeLockedDown: the compose stack is what people copy into
// production, so it must not ship a default password or publish more than
// the buyers' port: MySQL through the service's own user, every secret
// required (${VAR:?...}: compose refuses to start without it), Redis with a
// password, the internal listener (metrics, admin, confirm) unpublished.
func TestComposeLockedDown(t *testing.T) {
	raw, err := os.ReadFile("../docker/compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Command     any               `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			Profiles    []string          `yaml:"profiles"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if defaulted := regexp.MustCompile(`\$\{[A-Z_]*(PASSWORD|TOKEN)[A-Z_]*:?-`).FindAllString(string(raw), -1); defaulted != nil {
		t.Errorf("secrets with a default value: %v; require them with ${VAR:?message}", defaulted)
	}
	required := regexp.MustCompile(`^\$\{[A-Z_]+:\?[^}]+\}$`)
	app, mysql, redis := doc.Services["flashsale"], doc.Services["mysql"], doc.Services["redis"]

	dsn := app.Environment["FLASHSALE_MYSQL_DSN"]
	if strings.HasPrefix(dsn, "root:") || !strings.HasPrefix(dsn, mysql.Environment["MYSQL_USER"]+":") || mysql.Environment["MYSQL_USER"] == "" {
		t.Errorf("the service must reach MySQL as its own user (MYSQL_USER), not root: DSN %q", dsn)
	}
	for _, check := range []struct{ service, name, value string }{
		{"mysql", "MYSQL_PASSWORD", mysql.Environment["MYSQL_PASSWORD"]},
		{"mysql", "MYSQL_ROOT_PASSWORD", mysql.Environment["MYSQL_ROOT_PASSWORD"]},
		{"redis", "REDIS_PASSWORD", redis.Environment["REDIS_PASSWORD"]},
		{"flashsale", "FLASHSALE_REDIS_PASSWORD", app.Environment["FLASHSALE_REDIS_PASSWORD"]},
		{"flashsale", "FLASHSALE_ADMIN_TOKEN", app.Environment["FLASHSALE_ADMIN_TOKEN"]},
		{"flashsale", "FLASHSALE_SERVICE_TOKENS", app.Environment["FLASHSALE_SERVICE_TOKENS"]},
	} {
		if !required.MatchString(check.value) {
			t.Errorf("%s: %s = %q, want it required as ${VAR:?message}", check.service, check.name, check.value)
		}
	}
	if cmd, _ := yaml.Marshal(redis.Command); !strings.Contains(string(cmd), "--requirepass") {
		t.Errorf("redis runs without --requirepass: %s", cmd)
	}
	if app.Environment["FLASHSALE_INTERNAL_ADDR"] == "" {
		t.Error("the service has no FLASHSALE_INTERNAL_ADDR: metrics, admin and confirm would share the public port")
	}
	for name, svc := range doc.Services {
		for i, p := range svc.Ports {
			svc.Ports[i], _, _ = strings.Cut(p, " ")
		}
		if len(svc.Profiles) > 0 {
			// An opt-in profile (monitoring) may publish, on loopback only.
			for _, p := range svc.Ports {
				if !strings.HasPrefix(p, "127.0.0.1:") {
					t.Errorf("%s (profiles %v) publishes %s beyond loopback", name, svc.Profiles, p)
				}
			}
			continue
		}
		want := []string(nil)
		if name == "flashsale" {
			want = []string{"3004:3004"}
		}
		if !slices.Equal(svc.Ports, want) {
			t.Errorf("%s publishes %v, want %v (only the public port)", name, svc.Ports, want)
		}
	}
}

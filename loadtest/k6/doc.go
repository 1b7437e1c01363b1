// Package k6 holds flashsale.js, the k6 load test users run against a deployment; its test replays every request the script makes against the real API.
package k6

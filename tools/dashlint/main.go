// Command dashlint lints Grafana dashboards: it decodes each file strictly with Grafana's own
// schema types (github.com/grafana/grafana-foundation-sdk) and applies the rules of Grafana's
// dashboard-linter, re-implemented here (see docs/dashboard.md).
//
//	dashlint <dashboard.json>...
//
// One line per finding on stdout; exit status 1 when any finding is an error, 2 on usage or I/O
// errors, 0 otherwise.
package main

//go:generate go run ./internal/genunits

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: dashlint <dashboard.json>...")
		return 2
	}
	status := 0
	for _, path := range args {
		raw, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(stderr, "dashlint:", err)
			return 2
		}
		failed := false
		for _, f := range lintFile(path, raw) {
			fmt.Fprintln(stdout, f)
			failed = failed || f.Severity == SeverityError
		}
		if failed {
			status = 1
		}
	}
	return status
}

// lintFile returns the findings about one dashboard file: schema violations when it does not
// decode, else the rules' findings.
func lintFile(path string, raw []byte) []Finding {
	board, errs := decode(raw)
	if board != nil {
		return lint(board)
	}
	findings := make([]Finding, 0, len(errs))
	for _, err := range errs {
		findings = append(findings, Finding{
			Rule: schemaRule, Subject: fmt.Sprintf("dashboard %q", path), Message: err.Error(),
		})
	}
	return findings
}

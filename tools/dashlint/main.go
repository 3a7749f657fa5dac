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
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
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
	subjects := schemaSubjects(raw)
	findings := make([]Finding, 0, len(errs))
	for _, err := range errs {
		subject, message := fmt.Sprintf("dashboard %q", path), err.Error()
		if m := schemaPath.FindStringSubmatch(message); m != nil {
			if named, ok := subjects[m[1]]; ok {
				subject, message = named, m[2]
			}
		}
		findings = append(findings, Finding{Rule: schemaRule, Subject: subject, Message: message})
	}
	return findings
}

// schemaPath splits a schema error about a panel or a variable into the JSON path of that
// panel or variable and the rest.
var schemaPath = regexp.MustCompile(`^(panels\[\d+\](?:\.panels\[\d+\])?|templating\.list\[\d+\])\.(?:Panel: )?(.*)$`)

// schemaSubjects maps the JSON path of each panel (panels[i], panels[i].panels[j]) and variable
// (templating.list[i]) to its name, so that a schema error names the panel or variable rather
// than its index. Read loosely: the strict decoding is what failed.
func schemaSubjects(raw []byte) map[string]string {
	type panel struct {
		Title  string  `json:"title"`
		Panels []panel `json:"panels"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
	}
	subjects := map[string]string{}
	if json.Unmarshal(raw, &d) != nil {
		return subjects
	}
	for i, p := range d.Panels {
		subjects[fmt.Sprintf("panels[%d]", i)] = fmt.Sprintf("panel %q", p.Title)
		for j, child := range p.Panels {
			subjects[fmt.Sprintf("panels[%d].panels[%d]", i, j)] = fmt.Sprintf("panel %q", child.Title)
		}
	}
	for i, v := range d.Templating.List {
		subjects[fmt.Sprintf("templating.list[%d]", i)] = fmt.Sprintf("variable %q", v.Name)
	}
	return subjects
}

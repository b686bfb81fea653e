// compose-check validates a compose file with Compose's own loader (compose-go, the library that
// `docker compose` itself uses), so a file that this accepts is one `docker compose config` would
// accept, without needing a Docker engine or the compose plugin.
//
//	compose-check [-name llm-on-eks] [-profile a,b] [-env-file f] docker-compose.yaml
//
// Valid: prints the normalized project (interpolated, anchors and merges resolved, defaults
// filled in) as JSON on stdout and exits 0. Invalid: prints the loader's error and exits 1.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	// An explicit name: otherwise the loader derives it from the directory, and the output would
	// depend on where the repository was cloned.
	name := flag.String("name", "llm-on-eks", "project name")
	profiles := flag.String("profile", "", "comma-separated profiles to enable (default: $COMPOSE_PROFILES)")
	envFile := flag.String("env-file", "", "env file (default: .env beside the compose file, if any)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: compose-check [flags] COMPOSE_FILE")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *name, *profiles, *envFile); err != nil {
		fmt.Fprintln(os.Stderr, "compose-check:", err)
		os.Exit(1)
	}
}

func run(file, name, profiles, envFile string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	var enabled []string
	if profiles != "" {
		enabled = strings.Split(profiles, ",")
	}
	var envFiles []string
	if envFile != "" {
		envFiles = []string{envFile}
	}
	// The same options, in the same order, as `docker compose`: the working directory first (the
	// .env lookup and relative paths hang on it), then the OS environment, then the env file, so
	// `${VAR:-default}` interpolates exactly as it would for a user.
	opts, err := cli.NewProjectOptions([]string{abs},
		cli.WithName(name),
		cli.WithWorkingDirectory(filepath.Dir(abs)),
		cli.WithOsEnv,
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
		cli.WithInterpolation(true),
		cli.WithDefaultProfiles(enabled...),
	)
	if err != nil {
		return err
	}
	// LoadProject validates against the compose-spec schema, then checks consistency (every
	// depends_on, network, volume and secret must be defined) and normalizes.
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		return err
	}
	out, err := project.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(out))
	return err
}

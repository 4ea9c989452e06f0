// Command sockvisor supervises app servers behind Apache over Unix domain sockets.
package main

import (
	"os"

	"github.com/sockvisor/sockvisor/supervisor/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}

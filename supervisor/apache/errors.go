package apache

import "errors"

// Sentinel errors; the package wraps them, so callers test with errors.Is.
var (
	// ErrNoApache means no Apache installation or flavor could be found.
	ErrNoApache = errors.New("apache: Apache not found")
	// ErrModuleMissing means Apache lacks a module the rendered config needs.
	ErrModuleMissing = errors.New("apache: module not loaded")
	// ErrConfigTest means Apache's configtest rejected the config.
	ErrConfigTest = errors.New("apache: configtest failed")
	// ErrNotRegular means the config file path holds something other than a
	// regular file, which sockvisor refuses to replace.
	ErrNotRegular = errors.New("apache: config file is not a regular file")
	// ErrNotOurs means apache.config_file holds a file sockvisor did not write.
	ErrNotOurs = errors.New("apache: config file was not written by sockvisor")
	// ErrLinkConflict means the enable link's path holds something sockvisor
	// did not make.
	ErrLinkConflict = errors.New("apache: enable link taken")
	// ErrNotRunning means Apache was not running, so it was not reloaded.
	ErrNotRunning = errors.New("apache: Apache is not running")
	// ErrReload means the reload request failed.
	ErrReload = errors.New("apache: reload failed")
	// ErrApacheDied means Apache's main process did not survive the reload.
	ErrApacheDied = errors.New("apache: Apache died on reload")
)

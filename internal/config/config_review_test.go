package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Sampling intervals near zero would make their tickers spin a core.
func TestValidateIntervalFloor(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*Config)
		field string // "" = valid
	}{
		{"monitor 1ns", func(c *Config) { c.MonitorInterval = Duration(time.Nanosecond) }, "field monitor_interval"},
		{"monitor 9ms", func(c *Config) { c.MonitorInterval = Duration(9 * time.Millisecond) }, "field monitor_interval"},
		{"monitor 10ms", func(c *Config) { c.MonitorInterval = Duration(MinInterval) }, ""},
		{"ebpf 1us", func(c *Config) { c.EBPF.Interval = Duration(time.Microsecond) }, "field ebpf.interval"},
		{"ebpf 10ms", func(c *Config) { c.EBPF.Interval = Duration(MinInterval) }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.field != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field)):
				t.Fatalf("Validate = %v, want ErrInvalid naming %s", err, tc.field)
			}
		})
	}
}

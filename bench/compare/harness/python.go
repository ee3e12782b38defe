package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// DistPackages is where Debian installs pure-Python packages such as
// Flask; a Python other than Debian's imports them from there.
const DistPackages = "/usr/lib/python3/dist-packages"

// OwnGILPython finds a Python whose interpreters gowsgi runs with their own
// GIL (3.12, or 3.14 and newer: gowsgi refuses 3.13) and that gowsgi can
// build against (lib/pkgconfig/python3-embed.pc): prefix when given, else
// the newest such pyenv build under ~/.pyenv/versions. It returns the
// prefix and the version of its python3-embed.pc, or why there is none in
// skip; err is for a prefix that was given and cannot be read.
func OwnGILPython(prefix string) (dir, version, skip string, err error) {
	if prefix == "" {
		if prefix = newestOwnGIL(); prefix == "" {
			return "", "", "no Python 3.12 or 3.14+ with lib/pkgconfig/python3-embed.pc in ~/.pyenv/versions " +
				"(interpreters with their own GIL need one; give its prefix with -python-prefix)", nil
		}
	}
	version, err = pcVersion(filepath.Join(prefix, "lib", "pkgconfig", "python3-embed.pc"))
	if err != nil {
		return "", "", "", fmt.Errorf("python prefix %s: %v", prefix, err)
	}
	if !ownGIL(version) {
		return "", "", fmt.Sprintf("%s is Python %s; gowsgi runs interpreters with their own GIL on 3.12 and 3.14+",
			HomeRelative(prefix), version), nil
	}
	return prefix, version, "", nil
}

// newestOwnGIL is the newest pyenv build that OwnGILPython accepts, or "".
func newestOwnGIL() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	dirs, _ := filepath.Glob(filepath.Join(home, ".pyenv", "versions", "3.*"))
	var ok []string
	for _, d := range dirs {
		if v := filepath.Base(d); reVersion.MatchString(v) && ownGIL(v) {
			if _, err := os.Stat(filepath.Join(d, "lib", "pkgconfig", "python3-embed.pc")); err == nil {
				ok = append(ok, d)
			}
		}
	}
	slices.SortFunc(ok, func(a, b string) int { return compareVersions(filepath.Base(b), filepath.Base(a)) })
	if len(ok) == 0 {
		return ""
	}
	return ok[0]
}

var reVersion = regexp.MustCompile(`^3\.\d+\.\d+$`)

// compareVersions orders "3.12.2" before "3.12.10" and "3.14.0".
func compareVersions(a, b string) int {
	var x, y [3]int
	fmt.Sscanf(a, "%d.%d.%d", &x[0], &x[1], &x[2])
	fmt.Sscanf(b, "%d.%d.%d", &y[0], &y[1], &y[2])
	return slices.Compare(x[:], y[:])
}

// ownGIL tells the versions ("3.12", "3.12.1") whose interpreters gowsgi
// runs with their own GIL.
func ownGIL(v string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 3 || major == 3 && (minor == 12 || minor >= 14)
}

// pcVersion reads the Version: line of a pkg-config file.
func pcVersion(pc string) (string, error) {
	b, err := os.ReadFile(pc)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Version:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s: no Version line", pc)
}

// HomeRelative writes a path under the home directory as ~/..., so that a
// report names no one machine's home.
func HomeRelative(path string) string {
	if home, err := os.UserHomeDir(); err == nil {
		if rest, ok := strings.CutPrefix(path, home+string(filepath.Separator)); ok {
			return "~/" + rest
		}
	}
	return path
}

// BuildFor returns the environment that builds gowsgi against the Python
// at prefix (for BuildGowsgi): its pkg-config file, and an rpath to its
// lib for whatever the build still takes from there.
func BuildFor(prefix string) []string {
	return []string{"PKG_CONFIG_PATH=" + filepath.Join(prefix, "lib", "pkgconfig"),
		"CGO_LDFLAGS=-Wl,-rpath," + filepath.Join(prefix, "lib")}
}

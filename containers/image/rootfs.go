package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sluice-gpu/sluice/containers/python"
	"github.com/sluice-gpu/sluice/containers/spec"
)

// Rootfs is a root filesystem being assembled: in-image path -> source.
type Rootfs struct {
	files map[string]entry
}

type entry struct {
	hostPath string // regular file to copy; empty for data or directories
	data     []byte
	mode     fs.FileMode
	dir      bool
}

// NewRootfs returns a rootfs with the skeleton every function image has:
// /etc/passwd and /etc/group with root and nobody (65534), /tmp, /fn,
// /run/sluice and /sluice.
func NewRootfs() *Rootfs {
	r := &Rootfs{files: map[string]entry{}}
	for _, d := range []string{"/etc", "/fn", "/run/sluice", "/sluice", "/dev", "/proc", "/sys"} {
		r.AddDir(d, 0o755)
	}
	r.AddDir("/tmp", 0o1777)
	r.AddData("/etc/passwd", []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"), 0o644)
	r.AddData("/etc/group", []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)
	return r
}

func clean(p string) string { return path.Clean("/" + p) }

// AddDir adds a directory (and its parents).
func (r *Rootfs) AddDir(p string, mode fs.FileMode) {
	p = clean(p)
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if _, ok := r.files[d]; !ok {
			r.files[d] = entry{dir: true, mode: 0o755}
		}
	}
	if p != "/" {
		r.files[p] = entry{dir: true, mode: mode}
	}
}

// AddData adds a file with the given content.
func (r *Rootfs) AddData(p string, data []byte, mode fs.FileMode) {
	p = clean(p)
	r.AddDir(path.Dir(p), 0o755)
	r.files[p] = entry{data: data, mode: mode}
}

// AddFile adds the host file src at p (symlinks are resolved: the image gets
// a regular file).
func (r *Rootfs) AddFile(p, src string) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("add %s: %w", src, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("add %s: not a regular file", src)
	}
	p = clean(p)
	r.AddDir(path.Dir(p), 0o755)
	r.files[p] = entry{hostPath: src, mode: st.Mode().Perm()}
	return nil
}

// AddTree copies the host directory src to p, skipping entries for which
// skip returns true (skip gets the path relative to src).
func (r *Rootfs) AddTree(p, src string, skip func(rel string, d fs.DirEntry) bool) error {
	return filepath.WalkDir(src, func(hp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, hp)
		if rel != "." && skip != nil && skip(rel, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		dst := path.Join(p, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			r.AddDir(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			if st, err := os.Stat(hp); err == nil && st.Mode().IsRegular() {
				return r.AddFile(dst, hp)
			}
		case d.Type().IsRegular():
			return r.AddFile(dst, hp)
		}
		return nil
	})
}

// AddELF adds the executable or library src at p together with the shared
// libraries it needs (found with ldd), at their host paths. Missing
// libraries named in allowMissing (e.g. libcuda.so.1, provided at run time)
// are tolerated; others are an error.
func (r *Rootfs) AddELF(p, src string, allowMissing ...string) error {
	f, err := elf.Open(src)
	if err != nil {
		return fmt.Errorf("add %s: not an ELF file: %w", src, err)
	}
	dynamic := false
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			dynamic = true
		}
	}
	f.Close()
	if err := r.AddFile(p, src); err != nil {
		return err
	}
	if !dynamic {
		return nil
	}
	return r.addLibs(src, allowMissing)
}

func (r *Rootfs) addLibs(src string, allowMissing []string) error {
	out, err := exec.Command("ldd", src).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", src, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		var name, lib string
		if n, rest, ok := strings.Cut(line, " => "); ok {
			name = n
			lib, _, _ = strings.Cut(rest, " (")
		} else {
			lib, _, _ = strings.Cut(line, " (")
			name = lib
		}
		lib = strings.TrimSpace(lib)
		switch {
		case strings.HasPrefix(name, "linux-vdso"):
			continue
		case lib == "not found":
			if contains(allowMissing, name) {
				continue
			}
			return fmt.Errorf("ldd %s: %s not found", src, name)
		case !strings.HasPrefix(lib, "/"):
			continue
		}
		if _, ok := r.files[clean(lib)]; ok {
			continue
		}
		if err := r.AddFile(lib, lib); err != nil {
			return err
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ExecAdapter returns the host path of sluice-exec: $SLUICE_EXEC_ADAPTER if
// set, else sluice-exec beside the running executable (build/sluice), else
// in $SLUICE_BUILD, else build/sluice-exec under the working directory.
func ExecAdapter() (string, error) {
	cands := []string{os.Getenv("SLUICE_EXEC_ADAPTER")}
	if exe, err := os.Executable(); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(exe), "sluice-exec"))
	}
	if b := os.Getenv("SLUICE_BUILD"); b != "" {
		cands = append(cands, filepath.Join(b, "sluice-exec"))
	}
	cands = append(cands, filepath.Join("build", "sluice-exec"))
	for _, c := range cands {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return c, nil
		}
	}
	return "", fmt.Errorf("find sluice-exec (run make build, or set SLUICE_EXEC_ADAPTER): %w", os.ErrNotExist)
}

// HostPython returns the interpreter AddPython uses: $SLUICE_PYTHON if set,
// else /usr/bin/python3 if present, else python3 from PATH.
func HostPython() (string, error) {
	if p := os.Getenv("SLUICE_PYTHON"); p != "" {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3", nil
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		return "", fmt.Errorf("find python3: %w", err)
	}
	return p, nil
}

// AddPython adds the host's python3 (as /usr/bin/python3), its shared
// libraries and its standard library (at /usr/lib/python3.X, where the
// interpreter looks for it), without site-packages, tests, IDLE, Tk and the
// static library, plus Sluice's runtime at spec.PythonRuntimePath.
func (r *Rootfs) AddPython() error {
	py, err := HostPython()
	if err != nil {
		return err
	}
	// Ask the interpreter where it really is (pyenv and friends put shell
	// scripts in PATH) and where its standard library lives.
	out, err := exec.Command(py, "-S", "-c",
		"import sys,sysconfig;print(sys.executable);print(sysconfig.get_paths()['stdlib']);print('%d.%d'%sys.version_info[:2])").Output()
	if err != nil {
		return fmt.Errorf("query %s: %w", py, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 {
		return fmt.Errorf("query %s: unexpected answer %q", py, out)
	}
	bin, stdlib, ver := lines[0], lines[1], lines[2]
	if bin, err = filepath.EvalSymlinks(bin); err != nil {
		return fmt.Errorf("resolve %s: %w", py, err)
	}
	if err := r.AddELF(spec.PythonPath, bin); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(stdlib, "os.py")); err != nil {
		return fmt.Errorf("find the standard library of %s: %w", bin, err)
	}
	skip := map[string]bool{"test": true, "idlelib": true, "tkinter": true, "turtledemo": true,
		"ensurepip": true, "lib2to3": true, "site-packages": true, "dist-packages": true, "pydoc_data": true}
	dst := "/usr/lib/python" + ver
	err = r.AddTree(dst, stdlib, func(rel string, d fs.DirEntry) bool {
		top, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
		return skip[top] || strings.HasPrefix(top, "config-")
	})
	if err != nil {
		return fmt.Errorf("add standard library: %w", err)
	}
	// Extension modules bring their own shared libraries (libssl, libffi, ...).
	dyn, _ := filepath.Glob(filepath.Join(stdlib, "lib-dynload", "*.so"))
	for _, so := range dyn {
		if err := r.addLibs(so, nil); err != nil {
			return err
		}
	}
	r.AddData(spec.PythonRuntimePath, python.Source, 0o644)
	return nil
}

// Function adds what f's build section names: the binary (and its
// libraries) or the Python module (and the Python layer), plus extra files.
func (r *Rootfs) Function(f *spec.Function) error {
	b := f.Build
	if b == nil {
		return fmt.Errorf("function %s: no build section", f.Name)
	}
	switch {
	case b.Binary != "":
		src := f.Path(b.Binary)
		// GPU programs link libcuda.so.1, which Sluice provides at run time.
		if err := r.AddELF(spec.FnDir+"/"+filepath.Base(src), src, "libcuda.so.1", "libnvidia-ml.so.1"); err != nil {
			return err
		}
		if b.Adapter == spec.AdapterExec {
			adapter, err := ExecAdapter()
			if err != nil {
				return err
			}
			if err := r.AddELF(spec.ExecAdapterPath, adapter); err != nil {
				return err
			}
		}
	default:
		if err := r.AddPython(); err != nil {
			return err
		}
		src := f.Path(b.Python)
		if err := r.AddFile(spec.FnDir+"/"+filepath.Base(src), src); err != nil {
			return err
		}
	}
	for _, extra := range b.Files {
		src := f.Path(extra)
		st, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("function %s: build file: %w", f.Name, err)
		}
		dst := spec.FnDir + "/" + filepath.ToSlash(filepath.Clean(extra))
		if st.IsDir() {
			err = r.AddTree(dst, src, nil)
		} else {
			err = r.AddFile(dst, src)
		}
		if err != nil {
			return fmt.Errorf("function %s: %w", f.Name, err)
		}
	}
	return nil
}

// Len is the number of entries.
func (r *Rootfs) Len() int { return len(r.files) }

// WriteTar writes the rootfs as a tar stream, in path order, owned by root,
// with a fixed modification time.
func (r *Rootfs) WriteTar(w io.Writer) error {
	paths := make([]string, 0, len(r.files))
	for p := range r.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	tw := tar.NewWriter(w)
	mtime := time.Unix(0, 0)
	for _, p := range paths {
		e := r.files[p]
		name := strings.TrimPrefix(p, "/")
		hdr := &tar.Header{Name: name, Mode: int64(e.mode), ModTime: mtime, Format: tar.FormatPAX}
		if e.dir {
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("write rootfs tar: %w", err)
			}
			continue
		}
		hdr.Typeflag = tar.TypeReg
		if e.hostPath == "" {
			hdr.Size = int64(len(e.data))
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("write rootfs tar: %w", err)
			}
			if _, err := tw.Write(e.data); err != nil {
				return fmt.Errorf("write rootfs tar: %w", err)
			}
			continue
		}
		if err := copyFile(tw, hdr, e.hostPath); err != nil {
			return fmt.Errorf("write rootfs tar: %s: %w", p, err)
		}
	}
	return tw.Close()
}

func copyFile(tw *tar.Writer, hdr *tar.Header, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	hdr.Size = st.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err == nil && n != hdr.Size {
		err = errors.New("file changed while copying")
	}
	return err
}

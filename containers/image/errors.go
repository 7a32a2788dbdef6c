package image

import cerrdefs "github.com/containerd/errdefs"

func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

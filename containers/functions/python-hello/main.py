"""python-hello: a Sluice function on the Python runtime.

main(args) is called once per invocation; the module is imported once, so
the invocation counter below stays warm between calls.
"""

import platform

calls = 0


def main(args):
    global calls
    calls += 1
    name = "world"
    if isinstance(args, dict) and isinstance(args.get("name"), str):
        name = args["name"]
    return {"greeting": "hello, %s" % name, "calls": calls, "python": platform.python_version()}

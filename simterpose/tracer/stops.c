/* The two ptrace sequences of every emulated syscall, each in one call from Python.
 *
 * A seccomp stop costs four kernel calls (waitpid, PTRACE_GETREGS, PTRACE_SETREGS, PTRACE_CONT);
 * made one by one from Python through ctypes, the Python around them cost more than the calls
 * (benchmarks/interception_floor.py, docs/emulator.md). Mechanism only: what to answer is decided
 * by the caller.
 *
 *   wait_stop(flags, regs) -> (tid, status, got_regs)
 *       waitpid(-1, &status, flags) (EINTR retried after Python's signal handlers ran, as
 *       os.waitpid does, PEP 475); for a seccomp stop (PTRACE_EVENT_SECCOMP), PTRACE_GETREGS into
 *       `regs` (a writable buffer of sizeof(struct user_regs_struct) bytes); got_regs says whether
 *       it succeeded. Raises OSError (ChildProcessError when there is no child) as os.waitpid.
 *   answer(tid, regs, value) -> None
 *       The syscall stopped at is answered `value` without the kernel running it: orig_rax = -1,
 *       rax = value (as an unsigned 64-bit word) in `regs`, PTRACE_SETREGS, PTRACE_CONT. Raises
 *       OSError with the errno of the failing call (ProcessLookupError: the task is gone).
 *
 * See ptrace(2) (PTRACE_O_TRACESECCOMP, "Syscall-stops"), seccomp(2) (SECCOMP_RET_TRACE: a tracer
 * may skip the syscall by setting its number to -1).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>

static int regs_buffer(PyObject *obj, Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE) < 0)
        return -1;
    if ((size_t)view->len < sizeof(struct user_regs_struct)) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "regs: a buffer of at least sizeof(struct user_regs_struct)");
        return -1;
    }
    return 0;
}

static PyObject *wait_stop(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "wait_stop(flags, regs)");
        return NULL;
    }
    int flags = (int)PyLong_AsLong(args[0]);
    if (flags == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer regs;
    if (regs_buffer(args[1], &regs) < 0)
        return NULL;
    int status = 0, got = 0;
    pid_t tid;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        tid = waitpid(-1, &status, flags);
        Py_END_ALLOW_THREADS
        if (tid >= 0 || errno != EINTR)
            break;
        if (PyErr_CheckSignals() < 0) {  /* a handler raised (Ctrl-C): let it through */
            PyBuffer_Release(&regs);
            return NULL;
        }
    }
    if (tid < 0) {
        int e = errno;
        PyBuffer_Release(&regs);
        errno = e;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (tid > 0 && WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_SECCOMP)
        got = ptrace(PTRACE_GETREGS, tid, NULL, regs.buf) == 0;
    PyBuffer_Release(&regs);
    return Py_BuildValue("iiO", (int)tid, status, got ? Py_True : Py_False);
}

static PyObject *answer(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "answer(tid, regs, value)");
        return NULL;
    }
    long tid = PyLong_AsLong(args[0]);
    if (tid == -1 && PyErr_Occurred())
        return NULL;
    unsigned long long value = PyLong_AsUnsignedLongLongMask(args[2]);  /* -errno wraps, as rax */
    if (value == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    Py_buffer regs;
    if (regs_buffer(args[1], &regs) < 0)
        return NULL;
    struct user_regs_struct *r = regs.buf;
    r->orig_rax = (unsigned long long)-1;  /* the kernel runs nothing */
    r->rax = value;
    int failed = ptrace(PTRACE_SETREGS, (pid_t)tid, NULL, r) != 0 || ptrace(PTRACE_CONT, (pid_t)tid, NULL, 0) != 0;
    int e = errno;
    PyBuffer_Release(&regs);
    if (failed) {
        errno = e;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"wait_stop", (PyCFunction)(void (*)(void))wait_stop, METH_FASTCALL,
     "wait_stop(flags, regs) -> (tid, status, got_regs): waitpid, then GETREGS at a seccomp stop"},
    {"answer", (PyCFunction)(void (*)(void))answer, METH_FASTCALL,
     "answer(tid, regs, value): orig_rax = -1, rax = value, SETREGS, CONT"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_stops", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__stops(void)
{
    return PyModule_Create(&module);
}

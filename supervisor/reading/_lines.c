/* Line splitting in C: the two loops of reading a log that run once per line.
 *
 * `split_lines` turns a region of whole lines into `LogLine` tuples (the per-line Python loop of
 * tail.LineSplitter._whole_lines cost ~1.7 us a line, most of the time of reading history);
 * `line_starts` finds the line starts of a chunk for the TUI's index (logindex.py), keeping
 * only every `every`-th one. Both have a pure-Python twin, which is the reference: the tests
 * compare them on random bytes. Built by setup.py when a C compiler is there (optional).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* split_lines(region, pos, first, line_type, max_line, slow) -> list
 *
 * `region` holds whole lines, each ended by b"\n". Line k (0-based) becomes
 * line_type(first + k, start, end, text, False) where start/end are file offsets (`pos` is the
 * offset of region[0]) and text is the line decoded as UTF-8 with errors replaced and one
 * trailing b"\r" dropped. A line longer than `max_line`, or holding an ESC or NUL byte (which
 * tail.clean_text must clean), is made by `slow(lineno, raw, start, end)` instead.
 */
static PyObject *
split_lines(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t pos, first, max_line;
    PyObject *line_type, *slow;
    if (!PyArg_ParseTuple(args, "y*nnOnO", &buf, &pos, &first, &line_type, &max_line, &slow))
        return NULL;
    if (!PyType_Check(line_type) || !PyType_IsSubtype((PyTypeObject *)line_type, &PyTuple_Type)) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_TypeError, "line_type must be a tuple subclass");
        return NULL;
    }
    PyTypeObject *tp = (PyTypeObject *)line_type;
    const char *data = (const char *)buf.buf;
    Py_ssize_t n = buf.len;
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    Py_ssize_t at = 0, lineno = first;
    while (at < n) {
        const char *nl = memchr(data + at, '\n', (size_t)(n - at));
        Py_ssize_t stop = nl ? (Py_ssize_t)(nl - data) : n; /* a last line without \n */
        Py_ssize_t len = stop - at;
        Py_ssize_t start = pos + at, end = pos + stop + (nl ? 1 : 0);
        const char *raw = data + at;
        PyObject *line = NULL;
        int odd = len > max_line || memchr(raw, 0x1b, (size_t)len) || memchr(raw, 0, (size_t)len);
        if (odd) {
            line = PyObject_CallFunction(slow, "ny#nn", lineno, raw, len, start, end);
        } else {
            Py_ssize_t tlen = (len > 0 && raw[len - 1] == '\r') ? len - 1 : len;
            PyObject *text = PyUnicode_DecodeUTF8(raw, tlen, "replace");
            PyObject *a = PyLong_FromSsize_t(lineno);
            PyObject *b = PyLong_FromSsize_t(start);
            PyObject *c = PyLong_FromSsize_t(end);
            if (text && a && b && c)
                line = tp->tp_alloc(tp, 5);
            if (line == NULL) {
                Py_XDECREF(text);
                Py_XDECREF(a);
                Py_XDECREF(b);
                Py_XDECREF(c);
            } else {
                PyTuple_SET_ITEM(line, 0, a);
                PyTuple_SET_ITEM(line, 1, b);
                PyTuple_SET_ITEM(line, 2, c);
                PyTuple_SET_ITEM(line, 3, text);
                Py_INCREF(Py_False);
                PyTuple_SET_ITEM(line, 4, Py_False);
            }
        }
        if (line == NULL || PyList_Append(out, line) < 0) {
            Py_XDECREF(line);
            Py_DECREF(out);
            PyBuffer_Release(&buf);
            return NULL;
        }
        Py_DECREF(line);
        lineno++;
        at = stop + 1;
    }
    PyBuffer_Release(&buf);
    return out;
}

/* line_starts(data, base, index, every) -> (bytes, newlines)
 *
 * The offsets (base + i + 1) just past each b"\n" of `data`, as native uint64s, keeping the
 * start of line number `index + k` (k-th newline, from 0) only when that number is a multiple
 * of `every` (every=1: all of them). `newlines` is how many b"\n" there were.
 */
static PyObject *
line_starts(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    unsigned long long base, index, every;
    if (!PyArg_ParseTuple(args, "y*KKK", &buf, &base, &index, &every))
        return NULL;
    if (every == 0) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "every must be at least 1");
        return NULL;
    }
    const char *data = (const char *)buf.buf;
    Py_ssize_t n = buf.len;
    Py_ssize_t cap = 1024, kept = 0;
    uint64_t *starts = PyMem_RawMalloc(sizeof(uint64_t) * (size_t)cap);
    if (starts == NULL) {
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    unsigned long long count = 0;
    int failed = 0;
    unsigned long long phase = index % every;
    Py_ssize_t at = 0;
    Py_BEGIN_ALLOW_THREADS
    while (at < n) {
        const char *nl = memchr(data + at, '\n', (size_t)(n - at));
        if (nl == NULL)
            break;
        Py_ssize_t i = nl - data;
        if (phase == 0) {
            if (kept == cap) {
                uint64_t *more = PyMem_RawRealloc(starts, sizeof(uint64_t) * (size_t)cap * 2);
                if (more == NULL) {
                    failed = 1;
                    break;
                }
                starts = more;
                cap *= 2;
            }
            starts[kept++] = (uint64_t)(base + (unsigned long long)i + 1);
        }
        count++;
        phase = phase + 1 == every ? 0 : phase + 1;
        at = i + 1;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    if (failed) {
        PyMem_RawFree(starts);
        return PyErr_NoMemory();
    }
    PyObject *packed = PyBytes_FromStringAndSize((const char *)starts, kept * (Py_ssize_t)sizeof(uint64_t));
    PyMem_RawFree(starts);
    if (packed == NULL)
        return NULL;
    return Py_BuildValue("(NK)", packed, count);
}

static PyMethodDef methods[] = {
    {"split_lines", split_lines, METH_VARARGS, "Whole lines of a region -> LogLine tuples."},
    {"line_starts", line_starts, METH_VARARGS, "Offsets past each newline, every n-th kept."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lines", "Line splitting in C (see tail.py and logindex.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__lines(void)
{
    return PyModule_Create(&module);
}

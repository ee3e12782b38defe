/* embedloop runs a Python script in an interpreter embedded in a small C
 * program, to compare what the same Python costs from the shared libpython
 * and from the static archive, without a server around it:
 *
 *	cc -O2 -o /tmp/embed-shared bench/embedloop/embedloop.c \
 *		$(pkg-config --cflags --libs python3-embed)
 *	cc -O2 -no-pie -o /tmp/embed-static bench/embedloop/embedloop.c \
 *		$(pkg-config --cflags python3-embed) $(scripts/static-ldflags.sh)
 *	cd bench/apps && /tmp/embed-static loop.py flask django
 *
 * loop.py prints the CPU time per call. For instructions, count two runs
 * of calls.py with valgrind and take the difference:
 *
 *	PYTHONHASHSEED=0 valgrind --tool=callgrind /tmp/embed-static \
 *		../embedloop/calls.py flask 200     (and 1200)
 *
 * The arguments after the script's name become sys.argv[1:]. */
#include <Python.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s SCRIPT [ARG...]\n", argv[0]);
		return 2;
	}
	PyConfig config;
	PyConfig_InitPythonConfig(&config);
	config.parse_argv = 0;
	PyStatus st = PyConfig_SetBytesArgv(&config, argc - 1, argv + 1);
	if (!PyStatus_Exception(st))
		st = Py_InitializeFromConfig(&config);
	PyConfig_Clear(&config);
	if (PyStatus_Exception(st))
		Py_ExitStatusException(st);
	FILE *f = fopen(argv[1], "r");
	if (f == NULL) {
		perror(argv[1]);
		return 1;
	}
	int rc = PyRun_SimpleFileEx(f, argv[1], 1);
	if (Py_FinalizeEx() < 0)
		rc = 1;
	return rc == 0 ? 0 : 1;
}

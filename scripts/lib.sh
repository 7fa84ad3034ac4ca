# Helpers shared by the scripts (source it: `source "$ROOT/scripts/lib.sh"`). One
# definition each, so that every benchmark reports the same statistic and every private
# server finds its port the same way.

# free_port: prints a TCP port on 127.0.0.1 that nothing listens on now (the kernel's
# choice for a bind to port 0). Python, as the scripts already need python3; the port is
# free when printed, so start the server on it at once.
free_port() {
    "${PYTHON:-python3}" -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# median: the median of the numbers on stdin (separated by spaces or newlines): the middle
# value of an odd count, the mean of the two middle values of an even count. Prints
# nothing for no numbers.
median() {
    tr -s ' \t' '\n\n' | grep -v '^$' | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

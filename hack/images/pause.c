/* keel-test/pause: the sandbox placeholder process of the keel-test/pause image.
 * Owned by hack/test-images.sh, which builds it with `gcc -static -Os`.
 * Sleeps forever, exits 0 on SIGTERM/SIGINT (needed as PID 1, where default
 * dispositions are ignored) and reaps any children it inherits. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);

  sa.sa_handler = on_stop;
  if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0) return 1;

  sa.sa_handler = on_child;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  if (sigaction(SIGCHLD, &sa, NULL) < 0) return 1;

  for (;;) pause();
}

/** Process exit statuses, following BSD sysexits where one fits. */
export const EXIT_FAILURE = 1;
/** EX_USAGE: bad command line. */
export const EXIT_USAGE = 64;
/** EX_UNAVAILABLE: the service is not available. */
export const EXIT_UNAVAILABLE = 69;
/**
 * EX_TEMPFAIL: fsck could not check the image (missing, locked by a writer, unreadable): fsck's
 * own 0/1/2 say what a check found, and 1 ("repaired") must not also mean "did not run".
 */
export const EXIT_NOT_CHECKED = 75;

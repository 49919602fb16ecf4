/** Process exit statuses, following BSD sysexits where one fits. */
export const EXIT_FAILURE = 1;
/** EX_USAGE: bad command line. */
export const EXIT_USAGE = 64;
/** EX_UNAVAILABLE: the service is not available. */
export const EXIT_UNAVAILABLE = 69;

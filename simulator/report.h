/* simulator/report.h: rems-sim's report of a drill (docs/drills.md,
 * "Reading the report"): a table for people, the same as JSON, and the
 * timeline as an SVG picture. Pure functions of a struct drill_result and
 * its scenario: no clock, no network. */
#ifndef REMS_SIMULATOR_REPORT_H
#define REMS_SIMULATOR_REPORT_H

#include <stdio.h>

#include "simulator/drill.h"
#include "simulator/scenario.h"

/* Print the report as aligned text to @out. Returns 0, or REMS_EIO when
 * writing failed. */
int report_table(FILE *out, const struct drill_result *r,
                 const struct scenario *s);

/* Write the report as one JSON document (with the timeline samples) to
 * @out. Returns 0, REMS_EIO or REMS_ENOMEM. */
int report_json(FILE *out, const struct drill_result *r,
                const struct scenario *s);

/* Draw the timeline into the SVG file @path (written to "@path.tmp", then
 * renamed). Returns 0, REMS_EIO (@path cannot be written) or
 * REMS_ENOMEM. */
int report_svg(const char *path, const struct drill_result *r);

#endif /* REMS_SIMULATOR_REPORT_H */

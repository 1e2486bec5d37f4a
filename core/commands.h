/* The CLI commands; each is defined in the module that owns it. They return the exit status. */
#ifndef SW_CORE_COMMANDS_H
#define SW_CORE_COMMANDS_H
int cmd_info(int argc, char **argv);        /* core/cmd_info.c */
int cmd_init(int argc, char **argv);        /* core/cmd_init.c */
int cmd_data(int argc, char **argv);        /* core/cmd_data.c */
int cmd_train(int argc, char **argv);       /* offload/cmd_train.c */
int cmd_plan(int argc, char **argv);        /* offload/cmd_plan.c */
int cmd_export(int argc, char **argv);      /* offload/cmd_export.c */
int cmd_bench_io(int argc, char **argv);    /* io/cmd_bench_io.c */
int cmd_bench_adam(int argc, char **argv);  /* optim/cmd_bench_adam.c */
int cmd_report(int argc, char **argv);      /* core/cmd_report.c */
int cmd_tokenize(int argc, char **argv);    /* core/tokenizer_cmd.c */
#endif

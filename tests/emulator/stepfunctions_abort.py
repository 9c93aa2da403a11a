"""StopExecution ends an execution ABORTED, with the error and cause it was given.

AWS: StopExecution "Stops an execution"; the stopped execution's DescribeExecution status is
ABORTED (ExecutionStatus: RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED | PENDING_REDRIVE),
its `error` and `cause` those of the request ("StopExecution" and "DescribeExecution", AWS Step
Functions API Reference):
  https://docs.aws.amazon.com/step-functions/latest/apireference/API_StopExecution.html
  https://docs.aws.amazon.com/step-functions/latest/apireference/API_DescribeExecution.html
moto's interpreter stops its worker, but a Distributed Map whose child executions stop with it
reports that as the Map's failure first (States.ExceedToleratedFailureThreshold), and the
execution is recorded FAILED. Here a stop accepted while the execution runs wins: it ends
ABORTED with the stop's date, error and cause. (Its history still ends as moto writes it.)
"""

from moto.stepfunctions.parser.api import ExecutionStatus
from moto.stepfunctions.parser.backend import execution as execution_module

_STOP = "_asg_refresh_stop"


def install():
    execution_class = execution_module.Execution
    original_stop = execution_class.stop

    def stop(self, stop_date, error, cause):
        if self.exec_status == ExecutionStatus.RUNNING:
            setattr(self, _STOP, (stop_date, error, cause))
        original_stop(self, stop_date=stop_date, error=error, cause=cause)

    execution_class.stop = stop

    communication = execution_module.BaseExecutionWorkerCommunication
    original_reflect = communication._reflect_execution_status

    def reflect(self):
        original_reflect(self)
        stopped = getattr(self.execution, _STOP, None)
        if stopped is not None:
            stop_date, error, cause = stopped
            self.execution.exec_status = ExecutionStatus.ABORTED
            self.execution.stop_date = stop_date
            self.execution.error = error
            self.execution.cause = cause

    communication._reflect_execution_status = reflect

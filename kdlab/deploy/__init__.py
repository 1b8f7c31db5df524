"""From a distilled student to a deployed model: the student alone (:mod:`kdlab.deploy.student`),
its export (:mod:`kdlab.deploy.export`) and its profile beside the teacher (:mod:`kdlab.deploy.profile`)."""

from kdlab.deploy.student import DataFacts, LoadedStudent, build_student_network, load_student, resolve_checkpoint

__all__ = ["DataFacts", "LoadedStudent", "build_student_network", "load_student", "resolve_checkpoint"]
